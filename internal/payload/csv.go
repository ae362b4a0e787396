package payload

import (
	"bytes"
	"encoding/csv"
	"io"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/modelmon/modelmon/drift"
)

// csvDataFrame reads a CSV request of MLflow's scoring server (Content-Type
// text/csv, read there by pandas.read_csv): a header row of column names,
// then one row per instance. It returns the frame in pandas' "split" orient,
// {"columns": [...], "data": [[...], ...]}, built in the parser's arena, for
// dataframeSplit. A cell is missing when pandas reads it as NaN (empty, NA,
// null, NaN, …: drift.IsCSVMissing, as `exporter drift` reads CSV), a
// boolean for True/False (as pandas reads them), else a string, which
// csvNumbers then reads as a number when it is one. It stops at
// maxInstances+1 rows: dataframeSplit reports more.
func (p *Parser) csvDataFrame(body []byte) (*fastjson.Value, bool) {
	r := csv.NewReader(bytes.NewReader(body))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil || len(header) < 2 && !bytes.ContainsAny(body, ",\n") {
		return nil, false
	}
	a := &p.arena
	frame, cols, data := a.NewObject(), a.NewArray(), a.NewArray()
	for j, name := range header {
		cols.SetArrayItem(j, a.NewString(name))
	}
	for i := 0; i <= p.maxInstances; i++ {
		rec, err := r.Read()
		if err == io.EOF && i > 0 {
			break
		}
		if err != nil {
			// Not CSV, or only a header: a truncated JSON array reads as one.
			return nil, false
		}
		row := a.NewArray()
		for j, cell := range rec {
			row.SetArrayItem(j, csvCell(a, cell))
		}
		data.SetArrayItem(i, row)
	}
	frame.Set("columns", cols)
	frame.Set("data", data)
	return frame, true
}

func csvCell(a *fastjson.Arena, cell string) *fastjson.Value {
	if drift.IsCSVMissing(cell) {
		return a.NewNull()
	}
	switch cell {
	case "True", "true", "TRUE":
		return a.NewTrue()
	case "False", "false", "FALSE":
		return a.NewFalse()
	}
	return a.NewString(cell)
}

// csvNumbers turns the string values of b that read as numbers into
// numbers, keeping their text in Value.Str. CSV has no types: pandas types
// a column as a whole, and so does `exporter drift`, so a categorical
// column's "007" or "Inf" is that text, not 7 or infinity. A cell alone
// can't tell which its column is; whoever knows the feature (the drift
// reference) reads a categorical one's text.
func csvNumbers(b *Batch) {
	// By record: a record's features may be in an older array of b.feats.
	for i := range b.Records {
		for j := range b.Records[i].Features {
			v := &b.Records[i].Features[j].Value
			if v.Kind != KindString {
				continue
			}
			if f, err := strconv.ParseFloat(string(v.Str), 64); err == nil {
				v.Kind, v.Num = KindNumber, f
			}
		}
	}
}
