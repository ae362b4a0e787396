package parquetdata

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/modelmon/modelmon/drift"
)

// benchRow is a row of a training set of the size `exporter profile` reads:
// numbers that compress little, a timestamp, categories.
type benchRow struct {
	Amount  float64  `parquet:"amount"`
	Score   *float64 `parquet:"score,optional"`
	Age     int64    `parquet:"age"`
	Seen    int64    `parquet:"seen,timestamp(millisecond)"`
	Country string   `parquet:"country,dict"`
	Device  string   `parquet:"device"`
	Fraud   bool     `parquet:"fraud"`
}

// benchFile writes n rows with codec, in row groups of 64Ki rows, with
// more options of the writer.
func benchFile(tb testing.TB, n int, codec compress.Codec, opts ...parquet.WriterOption) []byte {
	tb.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	countries := []string{"DE", "FR", "US", "PL", "BR", "IN", "JP", "NG"}
	rows := make([]benchRow, n)
	for i := range rows {
		rows[i] = benchRow{
			Amount:  r.ExpFloat64() * 100,
			Age:     18 + r.Int64N(70),
			Seen:    1_700_000_000_000 + int64(i)*1000 + r.Int64N(1000),
			Country: countries[r.IntN(len(countries))],
			Device:  fmt.Sprintf("dev-%04d", r.IntN(5000)),
			Fraud:   r.IntN(50) == 0,
		}
		if i%10 != 0 {
			s := r.Float64()
			rows[i].Score = &s
		}
	}
	var buf bytes.Buffer
	opts = append([]parquet.WriterOption{parquet.Compression(codec), parquet.MaxRowsPerRowGroup(1 << 16)}, opts...)
	w := parquet.NewGenericWriter[benchRow](&buf, opts...)
	if _, err := w.Write(rows); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkRead reads a training set of 300,000 rows (several MB) compressed
// with zstd and with snappy, as `exporter profile` and --drift.reference do.
func BenchmarkRead(b *testing.B) {
	for _, codec := range []compress.Codec{&parquet.Zstd, &parquet.Snappy} {
		b.Run(codec.String(), func(b *testing.B) {
			data := benchFile(b, 300_000, codec)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				cols, err := Read("train.parquet", bytes.NewReader(data), int64(len(data)), drift.ReadOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if len(cols) != 7 {
					b.Fatalf("%d columns", len(cols))
				}
			}
		})
	}
}

// BenchmarkPages reads the same files' rows as Read does, with the checks of
// their pages, without turning the values into drift's columns: the part of
// BenchmarkRead the pages' decompression takes.
func BenchmarkPages(b *testing.B) {
	for _, codec := range []compress.Codec{&parquet.Zstd, &parquet.Snappy} {
		b.Run(codec.String(), func(b *testing.B) {
			data := benchFile(b, 300_000, codec)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			rows := make([]parquet.Row, 256)
			for b.Loop() {
				r := bytes.NewReader(data)
				orig, err := parquet.OpenFile(r, int64(len(data)), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
				if err != nil {
					b.Fatal(err)
				}
				pf, err := newPlainFile(r, int64(len(data)), orig.Metadata())
				if err != nil {
					b.Fatal(err)
				}
				f, err := parquet.OpenFile(pf, pf.size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for _, rg := range f.RowGroups() {
					rr := rg.Rows()
					for {
						k, err := rr.ReadRows(rows)
						n += k
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					rr.Close()
				}
				pf.close()
				if n != 300_000 {
					b.Fatalf("%d rows", n)
				}
			}
		})
	}
}

// BenchmarkReadLists reads 20,000 rows of an embedding (a list of 64
// floats) and a map of 8 scores: 72 columns from two.
func BenchmarkReadLists(b *testing.B) {
	type row struct {
		ID     int64              `parquet:"id"`
		Emb    []float32          `parquet:"emb,list"`
		Scores map[string]float64 `parquet:"scores"`
	}
	r := rand.New(rand.NewPCG(1, 2))
	rows := make([]row, 20_000)
	for i := range rows {
		rows[i] = row{ID: int64(i), Emb: make([]float32, 64), Scores: map[string]float64{}}
		for j := range rows[i].Emb {
			rows[i].Emb[j] = float32(r.NormFloat64())
		}
		for j := range 8 {
			rows[i].Scores[fmt.Sprint("s", j)] = r.Float64()
		}
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[row](&buf, parquet.Compression(&parquet.Zstd))
	if _, err := w.Write(rows); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		cols, err := Read("train.parquet", bytes.NewReader(data), int64(len(data)), drift.ReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(cols) != 1+64+8 {
			b.Fatalf("%d columns", len(cols))
		}
	}
}
