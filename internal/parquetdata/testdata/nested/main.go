// Command nested wrote ../nested.parquet with Apache Arrow's Go Parquet
// writer (github.com/apache/arrow-go/v18 v18.8.0), a writer other than the
// parquet-go the reader uses, and ../nested.jsonl, the same rows as JSON
// Lines, for TestNestedLikeJSONL: lists (of numbers, of strings, of structs,
// of lists), maps (of numbers, of lists), structs within structs, with null
// and empty lists and maps, null elements, values and structs. The Parquet
// file has data pages v2, compressed with snappy, of 1 KiB, in row groups of
// 25 rows. It is not built with the module (the go command skips
// testdata); to write the files again, copy it into a scratch module that
// requires arrow-go and run `go run . nested.parquet nested.jsonl`.
package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// A nil slice is a null list or map, an empty one an empty list or map; a
// nil pointer is a null.
type row struct {
	id    int64
	emb   []*float32
	m     []entry[*float64]
	user  *user
	tags  []string
	items []*item
	grid  [][]int32
	attrs []entry[[]float64]
	fraud *bool
}

type entry[V any] struct {
	key   string
	value V
}

type user struct {
	age     *int64
	country string
	address *address
}

type address struct{ zip string }

type item struct {
	sku string
	qty int64
}

func ptr[T any](v T) *T { return &v }

func rows() []row {
	countries := []string{"DE", "FR", "US", "PL"}
	var out []row
	for i := range 60 {
		r := row{id: int64(i)}
		switch {
		case i%11 == 3:
		case i%13 == 5:
			r.emb = []*float32{}
		default:
			for k := range 2 + i%3 {
				var x *float32
				if !(i%17 == 4 && k == 1) {
					x = ptr(float32(math.Sin(float64(i*(k+1)) / 7)))
				}
				r.emb = append(r.emb, x)
			}
		}
		switch {
		case i%9 == 2:
		case i%10 == 7:
			r.m = []entry[*float64]{}
		default:
			for j, k := range []string{"a", "b", "c", "d"} {
				if j == 0 || i>>j&1 == 1 {
					var v *float64
					if !(i%14 == 6 && j == 0) {
						v = ptr(float64(i)/4 + float64(j))
					}
					r.m = append(r.m, entry[*float64]{k, v})
				}
			}
		}
		if i%8 != 6 {
			u := &user{country: countries[i%4]}
			if i%15 != 1 {
				u.age = ptr(int64(20 + i%50))
			}
			if i%5 != 0 {
				u.address = &address{zip: fmt.Sprintf("Z%03d", i%7)}
			}
			r.user = u
		}
		if i%6 != 0 {
			r.tags = []string{}
			for j := range i % 4 {
				r.tags = append(r.tags, string(rune('p'+j+i%3)))
			}
		}
		r.items = []*item{}
		for j := range i % 3 {
			if i%19 == 7 && j == 1 {
				r.items = append(r.items, nil)
				continue
			}
			r.items = append(r.items, &item{sku: fmt.Sprintf("s%d", (i+j)%5), qty: int64(j + i%5)})
		}
		if i%23 != 4 {
			r.grid = [][]int32{}
			for j := range i % 3 {
				var inner []int32
				if !(i%10 == 2 && j == 0) {
					inner = []int32{}
					for k := range (i + j) % 3 {
						inner = append(inner, int32(i*j+k))
					}
				}
				r.grid = append(r.grid, inner)
			}
		}
		if i%12 != 11 {
			r.attrs = []entry[[]float64]{}
			for j, k := range []string{"x", "y"} {
				if j == 0 || i%3 == 1 {
					var l []float64
					if !(i%16 == 9 && j == 0) {
						for n := range 1 + (i+j)%2 {
							l = append(l, float64(i*10+n)/8)
						}
					}
					r.attrs = append(r.attrs, entry[[]float64]{k, l})
				}
			}
		}
		if i%10 != 3 {
			r.fraud = ptr(i%7 == 0)
		}
		out = append(out, r)
	}
	return out
}

// jsonLine writes r as a JSON object, its members in the schema's order.
func jsonLine(r row) string {
	var b strings.Builder
	num := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	list := func(n int, isNull bool, elem func(int) string) string {
		if isNull {
			return "null"
		}
		var s []string
		for i := range n {
			s = append(s, elem(i))
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	fmt.Fprintf(&b, `{"id": %d`, r.id)
	fmt.Fprintf(&b, `, "emb": %s`, list(len(r.emb), r.emb == nil, func(i int) string {
		if r.emb[i] == nil {
			return "null"
		}
		return num(float64(*r.emb[i]))
	}))
	fmt.Fprintf(&b, `, "m": %s`, object(len(r.m), r.m == nil, func(i int) (string, string) {
		if r.m[i].value == nil {
			return r.m[i].key, "null"
		}
		return r.m[i].key, num(*r.m[i].value)
	}))
	if u := r.user; u == nil {
		b.WriteString(`, "user": null`)
	} else {
		age := "null"
		if u.age != nil {
			age = strconv.FormatInt(*u.age, 10)
		}
		addr := "null"
		if u.address != nil {
			addr = strconv.Quote(u.address.zip)
			addr = `{"zip": ` + addr + `}`
		}
		fmt.Fprintf(&b, `, "user": {"age": %s, "country": %q, "address": %s}`, age, u.country, addr)
	}
	fmt.Fprintf(&b, `, "tags": %s`, list(len(r.tags), r.tags == nil, func(i int) string { return strconv.Quote(r.tags[i]) }))
	fmt.Fprintf(&b, `, "items": %s`, list(len(r.items), r.items == nil, func(i int) string {
		if r.items[i] == nil {
			return "null"
		}
		return fmt.Sprintf(`{"sku": %q, "qty": %d}`, r.items[i].sku, r.items[i].qty)
	}))
	fmt.Fprintf(&b, `, "grid": %s`, list(len(r.grid), r.grid == nil, func(i int) string {
		return list(len(r.grid[i]), r.grid[i] == nil, func(j int) string { return strconv.Itoa(int(r.grid[i][j])) })
	}))
	fmt.Fprintf(&b, `, "attrs": %s`, object(len(r.attrs), r.attrs == nil, func(i int) (string, string) {
		l := r.attrs[i].value
		return r.attrs[i].key, list(len(l), l == nil, func(j int) string { return num(l[j]) })
	}))
	fraud := "null"
	if r.fraud != nil {
		fraud = strconv.FormatBool(*r.fraud)
	}
	fmt.Fprintf(&b, `, "fraud": %s}`, fraud)
	return b.String()
}

func object(n int, isNull bool, member func(int) (string, string)) string {
	if isNull {
		return "null"
	}
	var s []string
	for i := range n {
		k, v := member(i)
		s = append(s, strconv.Quote(k)+": "+v)
	}
	return "{" + strings.Join(s, ", ") + "}"
}

func main() {
	item := arrow.StructOf(
		arrow.Field{Name: "sku", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "qty", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	)
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "emb", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "m", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Float64), Nullable: true},
		{Name: "user", Type: arrow.StructOf(
			arrow.Field{Name: "age", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
			arrow.Field{Name: "country", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "address", Type: arrow.StructOf(arrow.Field{Name: "zip", Type: arrow.BinaryTypes.String, Nullable: true}), Nullable: true},
		), Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "items", Type: arrow.ListOf(item), Nullable: true},
		{Name: "grid", Type: arrow.ListOf(arrow.ListOf(arrow.PrimitiveTypes.Int32)), Nullable: true},
		{Name: "attrs", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.ListOf(arrow.PrimitiveTypes.Float64)), Nullable: true},
		{Name: "fraud", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.NewGoAllocator(), sc)
	defer b.Release()
	var lines strings.Builder
	for _, r := range rows() {
		lines.WriteString(jsonLine(r) + "\n")
		b.Field(0).(*array.Int64Builder).Append(r.id)

		emb := b.Field(1).(*array.ListBuilder)
		if r.emb == nil {
			emb.AppendNull()
		} else {
			emb.Append(true)
			for _, x := range r.emb {
				if x == nil {
					emb.ValueBuilder().AppendNull()
				} else {
					emb.ValueBuilder().(*array.Float32Builder).Append(*x)
				}
			}
		}

		m := b.Field(2).(*array.MapBuilder)
		if r.m == nil {
			m.AppendNull()
		} else {
			m.Append(true)
			for _, e := range r.m {
				m.KeyBuilder().(*array.StringBuilder).Append(e.key)
				if e.value == nil {
					m.ItemBuilder().AppendNull()
				} else {
					m.ItemBuilder().(*array.Float64Builder).Append(*e.value)
				}
			}
		}

		ub := b.Field(3).(*array.StructBuilder)
		if u := r.user; u == nil {
			ub.AppendNull()
		} else {
			ub.Append(true)
			if u.age == nil {
				ub.FieldBuilder(0).AppendNull()
			} else {
				ub.FieldBuilder(0).(*array.Int64Builder).Append(*u.age)
			}
			ub.FieldBuilder(1).(*array.StringBuilder).Append(u.country)
			ab := ub.FieldBuilder(2).(*array.StructBuilder)
			if u.address == nil {
				ab.AppendNull()
			} else {
				ab.Append(true)
				ab.FieldBuilder(0).(*array.StringBuilder).Append(u.address.zip)
			}
		}

		tags := b.Field(4).(*array.ListBuilder)
		if r.tags == nil {
			tags.AppendNull()
		} else {
			tags.Append(true)
			for _, s := range r.tags {
				tags.ValueBuilder().(*array.StringBuilder).Append(s)
			}
		}

		items := b.Field(5).(*array.ListBuilder)
		items.Append(true)
		ib := items.ValueBuilder().(*array.StructBuilder)
		for _, it := range r.items {
			if it == nil {
				ib.AppendNull()
				continue
			}
			ib.Append(true)
			ib.FieldBuilder(0).(*array.StringBuilder).Append(it.sku)
			ib.FieldBuilder(1).(*array.Int64Builder).Append(it.qty)
		}

		grid := b.Field(6).(*array.ListBuilder)
		if r.grid == nil {
			grid.AppendNull()
		} else {
			grid.Append(true)
			inner := grid.ValueBuilder().(*array.ListBuilder)
			for _, l := range r.grid {
				if l == nil {
					inner.AppendNull()
					continue
				}
				inner.Append(true)
				for _, x := range l {
					inner.ValueBuilder().(*array.Int32Builder).Append(x)
				}
			}
		}

		attrs := b.Field(7).(*array.MapBuilder)
		if r.attrs == nil {
			attrs.AppendNull()
		} else {
			attrs.Append(true)
			for _, e := range r.attrs {
				attrs.KeyBuilder().(*array.StringBuilder).Append(e.key)
				lb := attrs.ItemBuilder().(*array.ListBuilder)
				if e.value == nil {
					lb.AppendNull()
					continue
				}
				lb.Append(true)
				for _, x := range e.value {
					lb.ValueBuilder().(*array.Float64Builder).Append(x)
				}
			}
		}

		if r.fraud == nil {
			b.Field(8).AppendNull()
		} else {
			b.Field(8).(*array.BooleanBuilder).Append(*r.fraud)
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Snappy),
		parquet.WithDataPageVersion(parquet.DataPageV2),
		parquet.WithDataPageSize(1024),
		parquet.WithMaxRowGroupLength(25),
	)
	w, err := pqarrow.NewFileWriter(sc, f, props, pqarrow.DefaultWriterProps())
	if err != nil {
		panic(err)
	}
	if err := w.Write(rec); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	if err := os.WriteFile(os.Args[2], []byte(lines.String()), 0o644); err != nil {
		panic(err)
	}
}
