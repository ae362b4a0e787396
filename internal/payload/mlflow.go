package payload

import (
	"strconv"

	"github.com/valyala/fastjson"
)

// mlflowRequest parses an MLflow scoring server request: "dataframe_split",
// "dataframe_records", "instances" or "inputs" (MLflow ≥ 2), or the pandas "split"
// ({"columns", "data"}) and "records" (a bare array) orients of MLflow 1.x. Other
// fields, such as "params", are ignored.
func (p *Parser) mlflowRequest(root *fastjson.Value, b *Batch) error {
	switch root.Type() {
	case fastjson.TypeArray:
		return p.rows(b, root, "body", nil)
	case fastjson.TypeObject:
	default:
		return reqErr(ReasonTypeMismatch, "body is not an object or array")
	}
	k := scanTopKeys(root.GetObject())
	switch {
	case k.split != nil:
		return p.dataframeSplit(b, k.split, "dataframe_split")
	case k.records != nil:
		return p.rows(b, k.records, "dataframe_records", nil)
	case k.instances != nil:
		return p.rows(b, k.instances, "instances", nil)
	case k.inputs != nil:
		return p.tfInputs(b, k.inputs)
	case k.data != nil:
		return p.dataframeSplit(b, root, "body")
	}
	return reqErr(ReasonMissingField, `no "dataframe_split", "dataframe_records", "instances" or "inputs"`)
}

// dataframeSplit parses a pandas DataFrame in "split" orient: {"columns": [...],
// "data": [[...], ...]}; "index" is ignored. Without "columns", features are positional.
func (p *Parser) dataframeSplit(b *Batch, v *fastjson.Value, field string) error {
	o := v.GetObject()
	if o == nil {
		return reqErr(ReasonTypeMismatch, strconv.Quote(field)+" is not an object")
	}
	data := o.Get("data")
	if data == nil {
		return reqErr(ReasonMissingField, strconv.Quote(field)+` has no "data"`)
	}
	if data.Type() != fastjson.TypeArray {
		return reqErr(ReasonTypeMismatch, strconv.Quote(field)+`.data is not an array`)
	}
	// Column names go to p.tensorName, unused by this format otherwise.
	hasColumns := false
	if cols := o.Get("columns"); cols != nil {
		if cols.Type() != fastjson.TypeArray {
			return reqErr(ReasonTypeMismatch, strconv.Quote(field)+`.columns is not an array`)
		}
		hasColumns = true
		for j, c := range cols.GetArray() {
			var name []byte
			switch c.Type() {
			case fastjson.TypeString:
				if name = c.GetStringBytes(); name == nil {
					name = []byte{}
				}
			case fastjson.TypeNull:
				name = p.positional(j)
			case fastjson.TypeObject, fastjson.TypeArray:
				return reqErr(ReasonTypeMismatch, strconv.Quote(field)+".columns["+strconv.Itoa(j)+"] is not a scalar")
			default:
				// pandas allows numeric column labels; keep their JSON text.
				start := len(p.names)
				p.names = c.MarshalTo(p.names)
				name = p.names[start:len(p.names):len(p.names)]
			}
			p.tensorName = append(p.tensorName, name)
		}
	}
	rows := data.GetArray()
	if len(rows) > p.maxInstances {
		return reqErr(ReasonTooManyInstances, strconv.Quote(field)+".data has "+strconv.Itoa(len(rows))+
			" rows, more than "+strconv.Itoa(p.maxInstances))
	}
	for i, r := range rows {
		if r.Type() != fastjson.TypeArray {
			return reqErr(ReasonTypeMismatch, strconv.Quote(field)+".data["+strconv.Itoa(i)+"] is not an array")
		}
		vals := r.GetArray()
		if hasColumns && len(vals) != len(p.tensorName) {
			return reqErr(ReasonShapeMismatch, strconv.Quote(field)+".data["+strconv.Itoa(i)+"] has "+
				strconv.Itoa(len(vals))+" values for "+strconv.Itoa(len(p.tensorName))+" columns")
		}
		p.beginRecord(b)
		for j, e := range vals {
			if p.full(b) {
				b.DroppedFeatures += countLeaves(e)
				continue
			}
			name := p.positional(j)
			if hasColumns {
				name = p.tensorName[j]
			}
			if err := p.flatten(b, e, name); err != nil {
				return err
			}
		}
		p.endRecord(b)
	}
	return nil
}
