// Command float16_time wrote ../float16_time.parquet with Apache Arrow's Go
// Parquet writer (github.com/apache/arrow-go/v18 v18.8.0), a writer other
// than the parquet-go the reader uses, which cannot write FLOAT16: a FLOAT16
// column and TIME columns in milliseconds (INT32), microseconds and
// nanoseconds (INT64), for TestFloat16AndTime. It is not built with the
// module (the go command skips testdata); to write the file again, copy it
// into a scratch module that requires arrow-go and run
// `go run . float16_time.parquet`.
package main

import (
	"math"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func main() {
	mem := memory.NewGoAllocator()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "f16", Type: arrow.FixedWidthTypes.Float16, Nullable: true},
		{Name: "time_ms", Type: arrow.FixedWidthTypes.Time32ms, Nullable: true},
		{Name: "time_us", Type: arrow.FixedWidthTypes.Time64us, Nullable: true},
		{Name: "time_ns", Type: arrow.FixedWidthTypes.Time64ns, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	f16 := []float32{1.5, -2.25, 65504, float32(math.Ldexp(1, -14)), float32(math.Ldexp(1, -24)), 0, float32(math.Copysign(0, -1)), 0.1, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0}
	valid := []bool{true, true, true, true, true, true, true, true, true, true, true, false}
	fb := b.Field(0).(*array.Float16Builder)
	for i, v := range f16 {
		switch {
		case !valid[i]:
			fb.AppendNull()
		case i == 4:
			fb.Append(float16.FromBits(0x0001)) // the smallest subnormal, 2^-24: New flushes subnormals to 0
		case i == 6:
			fb.Append(float16.FromBits(0x83ff)) // the largest subnormal, negative: -1023 * 2^-24
		default:
			fb.Append(float16.New(v))
		}
	}
	// 13:45:30.25 is 49530.25 s after midnight; 00:00:00, 23:59:59.999...
	ms := []int32{49530250, 0, 86399999, 1, 500, 3600000, 60000, 43200000, 1000, 2000, 3000, 0}
	for i, v := range ms {
		if i == len(ms)-1 {
			b.Field(1).(*array.Time32Builder).AppendNull()
			b.Field(2).(*array.Time64Builder).AppendNull()
			b.Field(3).(*array.Time64Builder).AppendNull()
			continue
		}
		b.Field(1).(*array.Time32Builder).Append(arrow.Time32(v))
		b.Field(2).(*array.Time64Builder).Append(arrow.Time64(int64(v)*1000 + 7))
		b.Field(3).(*array.Time64Builder).Append(arrow.Time64(int64(v)*1000000 + 9))
	}
	rec := b.NewRecord()
	defer rec.Release()
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	w, err := pqarrow.NewFileWriter(sc, f, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithDictionaryDefault(false)), pqarrow.DefaultWriterProps())
	if err != nil {
		panic(err)
	}
	if err := w.Write(rec); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
