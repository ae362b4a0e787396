// Package parquetdata reads reference data (training data) from Parquet
// files into the drift package's columns, as drift.ReadCSV and ReadJSONL read
// CSV and JSON Lines, so that `exporter profile`, `exporter drift` and
// --drift.reference take the files data science teams keep their training
// sets in.
//
// A row is read as ReadJSONL reads its JSON object, flattened: a nested
// group's fields are named by their path ("user.age"), a list's elements by
// their index ("emb.0", "emb.1", ...), a map's values by their key
// ("m.<key>"), and so on down lists of structs, maps of lists, lists of
// lists. So the same rows as Parquet and as JSON Lines give the same
// columns, in the same order (that in which their names first appear), and
// the same profile: a null (of a value, a group, a list or a map) is
// JSON's null, a missing value of its name, and no column of its own
// beside the fields or elements that other rows have; a group null in
// every row is one column of its name, all missing, as in JSON Lines, not
// the columns of the fields its schema names. The data makes at most
// drift.MaxColumns columns, as JSON Lines' do: a list or map of more
// elements is an error.
//
// A column's kind comes from the schema's type of its values: booleans,
// integers, floating point numbers (half precision, FLOAT16, included),
// decimals, dates, timestamps and times of day are numeric (booleans 1 and
// 0, dates in days, timestamps in seconds since the epoch and times of day
// in seconds since midnight); strings, enums and other byte arrays are
// categorical, unless drift.ReadOptions force a kind. Nulls are missing (drift.NA); NaN and ±Inf
// of floating point columns are those numbers, as in CSV and JSON Lines,
// which `exporter drift` counts as "nan" and "inf" violations, as the
// sidecar counts them, and BuildProfile as missing, in a column read as
// categorical too (drift.NonFinite).
package parquetdata

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"

	"github.com/modelmon/modelmon/drift"
)

// leaf is one column of the file.
type leaf struct {
	index   int // the file's column index
	conv    func(parquet.Value) string
	numeric bool
}

// Read reads the Parquet file r of the given size. name is the file's name,
// for errors.
func Read(name string, r io.ReaderAt, size int64, opts drift.ReadOptions) (cols []drift.Column, err error) {
	defer func() {
		// parquet-go panics on some damaged files (a dictionary index out
		// of range, say): an error here, not a crash of the sidecar.
		if p := recover(); p != nil {
			cols, err = nil, fmt.Errorf("%s: damaged Parquet file: %v", name, p)
		}
	}()
	if err := checkFooter(r, size); err != nil {
		return nil, fmt.Errorf("%s: not a Parquet file: %w", name, err)
	}
	cols, _, err = read(name, r, size, opts)
	return cols, err
}

// read is Read, which also returns the plain file it read, for tests.
func read(name string, r io.ReaderAt, size int64, opts drift.ReadOptions) ([]drift.Column, *plainFile, error) {
	// The page index and bloom filters are not read: the pages are
	// read in full, and a damaged index could only fail the read.
	skip := []parquet.FileOption{parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true)}
	orig, err := parquet.OpenFile(r, size, skip...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a Parquet file: %w", name, err)
	}
	pf, err := newPlainFile(r, size, orig.Metadata())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: damaged Parquet file: %w", name, err)
	}
	defer pf.close()
	f, err := parquet.OpenFile(pf, pf.size, skip...)
	if err != nil {
		return nil, pf, fmt.Errorf("%s: damaged Parquet file: %w", name, err)
	}
	leaves, err := leavesOf(f.Schema(), orig.Metadata())
	if err != nil {
		return nil, pf, fmt.Errorf("%s: %w", name, err)
	}
	root, err := schemaOf(orig.Metadata(), len(leaves))
	if err != nil {
		return nil, pf, fmt.Errorf("%s: damaged Parquet file: %w", name, err)
	}
	a := &assembler{
		root:   root,
		leaves: leaves,
		recs:   drift.NewRecords(name, opts),
		vals:   make([][]parquet.Value, len(leaves)),
		pos:    make([]int, len(leaves)),
	}
	buf := make([]parquet.Row, 256)
	n := 0
	for _, rg := range f.RowGroups() {
		rr := rg.Rows()
		for {
			k, err := rr.ReadRows(buf)
			for _, row := range buf[:k] {
				n++
				if err := a.add(row); err != nil {
					rr.Close()
					if errors.Is(err, errOutOfStep) {
						return nil, pf, fmt.Errorf("%s: damaged Parquet file: row %d: %w", name, n, err)
					}
					return nil, pf, err
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rr.Close()
				return nil, pf, readError(name, err)
			}
		}
		if err := rr.Close(); err != nil {
			return nil, pf, readError(name, err)
		}
	}
	// A struct null in every row makes one column, all missing, as
	// {"user": null} on every line of JSON Lines does: the columns of its
	// fields, which the schema names but no row has, are not made.
	cols, err := a.recs.Columns()
	if err == nil && len(cols) == 0 {
		err = fmt.Errorf("%s: no columns: its lists and maps are all empty", name)
	}
	return cols, pf, err
}

// readError is the error of reading the file name: a page that does not
// decompress as its header says is damage, as newPlainFile reports it.
func readError(name string, err error) error {
	var pe *pageError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: damaged Parquet file: %w", name, pe)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// checkFooter checks the file's end: the footer's length, then "PAR1". The
// length must fit in the file: parquet-go allocates what it says before it
// checks (a damaged 461-byte file made it allocate 3.6 GB).
func checkFooter(r io.ReaderAt, size int64) error {
	const magic = "PAR1"
	if size < 12 {
		return errors.New("shorter than a Parquet file's header and footer")
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return err
	}
	if string(tail[4:]) != magic {
		return errors.New("no PAR1 at the end")
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); n > size-12 {
		return fmt.Errorf("footer of %d bytes in a file of %d", n, size)
	}
	return nil
}

// leavesOf lists the schema's leaf columns in the file's column order, a
// column's index its index in the list.
func leavesOf(s *parquet.Schema, md *format.FileMetaData) ([]leaf, error) {
	// The file's own schema elements of the leaves, in column order (the
	// schema is flattened depth first, and leaves have a physical type
	// and no children, as schemaOf reads them): parquet-go's types drop
	// the logical types it has no type for, FLOAT16 among them, which the
	// elements keep.
	var elems []*format.SchemaElement
	for i := 1; i < len(md.Schema); i++ {
		if e := &md.Schema[i]; e.Type.Valid && e.NumChildren.V <= 0 {
			elems = append(elems, e)
		}
	}
	var out []leaf
	for _, path := range s.Columns() {
		lc, ok := s.Lookup(path...)
		if !ok {
			return nil, fmt.Errorf("column %q not in the schema", strings.Join(path, "."))
		}
		if lc.ColumnIndex != len(out) {
			return nil, fmt.Errorf("column %q of index %d, not %d", strings.Join(path, "."), lc.ColumnIndex, len(out))
		}
		l := leaf{index: lc.ColumnIndex}
		var elem *format.SchemaElement
		if lc.ColumnIndex < len(elems) {
			elem = elems[lc.ColumnIndex]
		}
		l.conv, l.numeric = converter(lc.Node.Type(), elem)
		out = append(out, l)
	}
	return out, nil
}

// converter returns how the values of a column of type t, whose schema
// element in the file is elem (nil if unknown), become text, and whether
// they are numbers.
func converter(t parquet.Type, elem *format.SchemaElement) (func(parquet.Value) string, bool) {
	lt := t.LogicalType()
	if t.Kind() == parquet.FixedLenByteArray && t.Length() == 2 && (isFloat16(lt) || elem != nil && isFloat16(&elem.LogicalType)) {
		return func(v parquet.Value) string {
			return strconv.FormatFloat(halfFloat(v.ByteArray()), 'g', -1, 64)
		}, true
	}
	var decimalScale int32 = -1
	if lt != nil {
		if d, ok := lt.Value.(*format.DecimalType); ok {
			decimalScale = d.Scale
		}
	}
	// NaN and ±Inf become the text drift.FormatNumber gives them, which
	// drift reads back as those numbers, in a column forced categorical
	// too: only a null is missing.
	num := drift.FormatNumber
	// Timestamps become seconds since the epoch, and times of day seconds
	// since midnight, whatever the unit they are stored in.
	var perSecond float64
	if lt != nil {
		var unit format.TimeUnit
		switch tt := lt.Value.(type) {
		case *format.TimestampType:
			unit = tt.Unit
		case *format.TimeType:
			unit = tt.Unit
		}
		if unit.Value != nil && unit.Value.Duration() > 0 {
			perSecond = float64(time.Second / unit.Value.Duration())
		}
	}
	if ct := t.ConvertedType(); perSecond == 0 && ct != nil {
		switch *ct {
		case deprecated.TimestampMillis, deprecated.TimeMillis:
			perSecond = 1e3
		case deprecated.TimestampMicros, deprecated.TimeMicros:
			perSecond = 1e6
		}
	}
	switch t.Kind() {
	case parquet.Boolean:
		return func(v parquet.Value) string {
			if v.Boolean() {
				return "1"
			}
			return "0"
		}, true
	case parquet.Int32, parquet.Int64:
		unsigned := false
		if lt != nil {
			if it, ok := lt.Value.(*format.IntType); ok {
				unsigned = !it.IsSigned
			}
		}
		return func(v parquet.Value) string {
			var x float64
			switch {
			case t.Kind() == parquet.Int32 && unsigned:
				x = float64(uint32(v.Int32()))
			case t.Kind() == parquet.Int32:
				x = float64(v.Int32())
			case unsigned:
				x = float64(uint64(v.Int64()))
			default:
				x = float64(v.Int64())
			}
			switch {
			case decimalScale >= 0:
				x /= math.Pow10(int(decimalScale))
			case perSecond > 0:
				x /= perSecond
			}
			return num(x)
		}, true
	case parquet.Int96:
		// Impala's and Spark's legacy timestamps: nanoseconds of the day and
		// the Julian day.
		return func(v parquet.Value) string {
			i := v.Int96()
			nanos := int64(uint64(i[1])<<32 | uint64(i[0]))
			day := int64(i[2])
			return num(float64(day-2440588)*86400 + float64(nanos)/1e9)
		}, true
	case parquet.Float:
		return func(v parquet.Value) string { return num(float64(v.Float())) }, true
	case parquet.Double:
		return func(v parquet.Value) string { return num(v.Double()) }, true
	case parquet.ByteArray, parquet.FixedLenByteArray:
		if decimalScale >= 0 {
			scale := new(big.Float).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimalScale)), nil))
			return func(v parquet.Value) string {
				x, _ := new(big.Float).Quo(new(big.Float).SetInt(twosComplement(v.ByteArray())), scale).Float64()
				return num(x)
			}, true
		}
		if lt != nil {
			switch lt.Value.(type) {
			case *format.StringType, *format.EnumType, *format.JsonType, *format.BsonType:
				return func(v parquet.Value) string { return string(v.ByteArray()) }, false
			case *format.UUIDType:
				return func(v parquet.Value) string { return uuid(v.ByteArray()) }, false
			}
		}
		if t.Kind() == parquet.FixedLenByteArray {
			return func(v parquet.Value) string { return hex.EncodeToString(v.ByteArray()) }, false
		}
		// Binary without an annotation: writers such as Impala's keep text so.
		return func(v parquet.Value) string { return string(v.ByteArray()) }, false
	}
	return func(v parquet.Value) string { return v.String() }, false
}

func isFloat16(lt *format.LogicalType) bool {
	if lt == nil {
		return false
	}
	_, ok := lt.Value.(*format.Float16Type)
	return ok
}

// halfFloat reads an IEEE 754 half-precision number, little-endian as
// Parquet stores FLOAT16: a sign bit, 5 bits of exponent (bias 15) and 10 of
// fraction.
func halfFloat(b []byte) float64 {
	if len(b) != 2 {
		return math.NaN()
	}
	h := binary.LittleEndian.Uint16(b)
	exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
	var x float64
	switch exp {
	case 0: // zero and subnormals: frac × 2^-24
		x = math.Ldexp(frac, -24)
	case 0x1f:
		x = math.Inf(1)
		if frac != 0 {
			x = math.NaN()
		}
	default: // (1 + frac/1024) × 2^(exp-15)
		x = math.Ldexp(1024+frac, exp-25)
	}
	if h&0x8000 != 0 {
		x = -x
	}
	return x
}

// twosComplement reads a big-endian two's complement integer.
func twosComplement(b []byte) *big.Int {
	x := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return x
}

// uuid formats 16 bytes as a UUID.
func uuid(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
