package parquetdata

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
)

func columnNames(cols []drift.Column) []string {
	var names []string
	for _, c := range cols {
		names = append(names, c.Name)
	}
	return names
}

// The same rows as JSON Lines and as Parquet (written by Arrow,
// testdata/nested/main.go: lists of numbers, strings, structs and lists,
// maps of numbers and of lists, structs in structs, with null and empty
// lists and maps, null elements, values and structs) give the same
// columns, in the same order, with the same values, and so the same
// profile.
func TestNestedLikeJSONL(t *testing.T) {
	jsonl, err := os.ReadFile("testdata/nested.jsonl")
	require.NoError(t, err)
	want, err := drift.ReadJSONL("nested.jsonl", bytes.NewReader(jsonl), drift.ReadOptions{})
	require.NoError(t, err)
	got, err := readFile(t, "nested.parquet", drift.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, columnNames(want), columnNames(got))
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got)) // NaN for missing numbers

	// A list of floats is a column per element, a map one per key, a
	// struct one per field; a null where other rows have a list, map or
	// struct is no column of its own.
	require.Equal(t, []string{
		"id", "emb.0", "emb.1", "m.a", "user.age", "user.country", "attrs.x.0", "fraud", // row 0
		"emb.2", "user.address.zip", "tags.0", "items.0.sku", "items.0.qty", "grid.0.0", "attrs.x.1", "attrs.y.0", // row 1
		"emb.3", "tags.1", // row 2
	}, columnNames(got)[:18])
	c := byName(got)
	requireNums(t, []float64{0, float64(float32(math.Sin(1.0 / 7))), float64(float32(math.Sin(2.0 / 7))), drift.NA(), float64(float32(math.Sin(4.0 / 7)))}, c["emb.0"].Num[:5])
	requireNums(t, []float64{drift.NA(), drift.NA(), drift.NA(), 1.75, drift.NA()}, c["m.b"].Num[:5])
	require.Equal(t, []string{"", "Z001", "Z002"}, c["user.address.zip"].Str[:3])
	require.Equal(t, []string{"", "q", "r", "p", ""}, c["tags.0"].Str[:5])
	requireNums(t, []float64{0, 1.25, 2.5, 3.75, 5}, c["attrs.x.0"].Num[:5])
	requireNums(t, []float64{1, 0, 0, drift.NA(), 0}, c["fraud"].Num[:5])
	require.NotContains(t, c, "emb")
	require.NotContains(t, c, "user.address")

	opts := drift.DefaultBuildOptions()
	wantProfile, err := drift.BuildProfile(want, opts)
	require.NoError(t, err)
	gotProfile, err := drift.BuildProfile(got, opts)
	require.NoError(t, err)
	require.Equal(t, wantProfile, gotProfile)
	require.Len(t, gotProfile.Features, len(got)+1) // and the reconstruction error

	// Asked for by name, as from JSON Lines.
	want, err = drift.ReadJSONL("nested.jsonl", bytes.NewReader(jsonl), drift.ReadOptions{Columns: []string{"m.d", "emb.3", "items.1"}})
	require.NoError(t, err)
	got, err = readFile(t, "nested.parquet", drift.ReadOptions{Columns: []string{"m.d", "emb.3", "items.1"}})
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got))
	_, err = readFile(t, "nested.parquet", drift.ReadOptions{Columns: []string{"emb.9"}})
	require.EqualError(t, err, `nested.parquet: missing column "emb.9"`)
}

// The nested files of Apache's parquet-testing read as their JSON (as
// Arrow's and parquet-testing's descriptions give it) would: lists within
// lists, maps within maps, Impala's lists and maps (its repeated groups
// named "map", legacy of MAP_KEY_VALUE), and a repeated group outside any
// list (repeated_no_annotation).
func TestNestedParquetTesting(t *testing.T) {
	for _, tc := range []struct {
		file  string
		jsonl string
	}{
		// a: list<list<list<string>>>, b: int32.
		{"nested_lists.snappy.parquet", `{"a": [[["a", "b"], ["c"]], [null, ["d"]]], "b": 1}
{"a": [[["a", "b"], ["c", "d"]], [null, ["e"]]], "b": 1}
{"a": [[["a", "b"], ["c", "d"], ["e"]], [null, ["f"]]], "b": 1}
`},
		// a: map<string, map<int32, bool>>, b: int32, c: double.
		{"nested_maps.snappy.parquet", `{"a": {"a": {"1": true, "2": false}}, "b": 1, "c": 1}
{"a": {"b": {"1": true}}, "b": 1, "c": 1}
{"a": {"c": null}, "b": 1, "c": 1}
{"a": {"d": {}}, "b": 1, "c": 1}
{"a": {"e": {"1": true}}, "b": 1, "c": 1}
{"a": {"f": {"3": true, "4": false, "5": true}}, "b": 1, "c": 1}
`},
		{"repeated_no_annotation.parquet", `{"id": 1, "phoneNumbers": null}
{"id": 2, "phoneNumbers": null}
{"id": 3, "phoneNumbers": {"phone": []}}
{"id": 4, "phoneNumbers": {"phone": [{"number": 5555555555, "kind": null}]}}
{"id": 5, "phoneNumbers": {"phone": [{"number": 1111111111, "kind": "home"}]}}
{"id": 6, "phoneNumbers": {"phone": [{"number": 1111111111, "kind": "home"}, {"number": 2222222222, "kind": null}, {"number": 3333333333, "kind": "mobile"}]}}
`},
		{"nullable.impala.parquet", `{"id": 1, "int_array": [1, 2, 3], "int_array_Array": [[1, 2], [3, 4]], "int_map": {"k1": 1, "k2": 100}, "int_Map_Array": [{"k1": 1}], "nested_struct": {"A": 1, "b": [1], "C": {"d": [[{"E": 10, "F": "aaa"}, {"E": -10, "F": "bbb"}], [{"E": 11, "F": "c"}]]}, "g": {"foo": {"H": {"i": [1.1]}}}}}
{"id": 2, "int_array": [null, 1, 2, null, 3, null], "int_array_Array": [[null, 1, 2, null], [3, null, 4], [], null], "int_map": {"k1": 2, "k2": null}, "int_Map_Array": [{"k3": null, "k1": 1}, null, {}], "nested_struct": {"A": null, "b": [null], "C": {"d": [[{"E": null, "F": null}, {"E": 10, "F": "aaa"}, {"E": null, "F": null}, {"E": -10, "F": "bbb"}, {"E": null, "F": null}], [{"E": 11, "F": "c"}, null], [], null]}, "g": {"g1": {"H": {"i": [2.2, null]}}, "g2": {"H": {"i": []}}, "g3": null, "g4": {"H": {"i": null}}, "g5": {"H": null}}}}
{"id": 3, "int_array": [], "int_array_Array": [null], "int_map": {}, "int_Map_Array": [null, null], "nested_struct": {"A": null, "b": null, "C": {"d": []}, "g": {}}}
{"id": 4, "int_array": null, "int_array_Array": [], "int_map": {}, "int_Map_Array": [], "nested_struct": {"A": null, "b": null, "C": {"d": null}, "g": null}}
{"id": 5, "int_array": null, "int_array_Array": null, "int_map": {}, "int_Map_Array": null, "nested_struct": {"A": null, "b": null, "C": null, "g": {"foo": {"H": {"i": [2.2, 3.3]}}}}}
{"id": 6, "int_array": null, "int_array_Array": null, "int_map": null, "int_Map_Array": null, "nested_struct": null}
{"id": 7, "int_array": null, "int_array_Array": [null, [5, 6]], "int_map": {"k1": null, "k3": null}, "int_Map_Array": null, "nested_struct": {"A": 7, "b": [2, 3, null], "C": {"d": [[], [null], null]}, "g": null}}
`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want, err := drift.ReadJSONL("x.jsonl", strings.NewReader(tc.jsonl), drift.ReadOptions{})
			require.NoError(t, err)
			got, err := readFile(t, tc.file, drift.ReadOptions{})
			require.NoError(t, err)
			// Strings that are all missing are text to Parquet's schema,
			// numbers (NaN) to JSON's guess.
			for i := range want {
				if want[i].Num != nil && got[i].Str != nil && strings.Join(got[i].Str, "") == "" {
					want[i] = drift.Column{Name: want[i].Name, Str: got[i].Str}
				}
			}
			require.Equal(t, fmt.Sprint(want), fmt.Sprint(got))
		})
	}
}

// A list's elements, or a map's keys, make at most drift.MaxColumns
// columns with the others, as JSON Lines' do.
func TestNestedMaxColumns(t *testing.T) {
	type row struct {
		ID  int64            `parquet:"id"`
		Emb []float64        `parquet:"emb,list"`
		M   map[string]int64 `parquet:"m"`
	}
	write := func(rows ...row) []byte {
		var buf bytes.Buffer
		w := parquet.NewGenericWriter[row](&buf, parquet.Compression(&parquet.Zstd))
		_, err := w.Write(rows)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return buf.Bytes()
	}
	read := func(b []byte, opts drift.ReadOptions) ([]drift.Column, error) {
		return Read("x.parquet", bytes.NewReader(b), int64(len(b)), opts)
	}
	cols, err := read(write(row{ID: 1, Emb: make([]float64, drift.MaxColumns-1)}), drift.ReadOptions{})
	require.NoError(t, err)
	require.Len(t, cols, drift.MaxColumns)
	// A list of a million zeros is a few kilobytes compressed.
	big := write(row{ID: 1, Emb: []float64{1}}, row{ID: 2, Emb: make([]float64, 1_000_000)})
	require.Less(t, len(big), 100_000)
	_, err = read(big, drift.ReadOptions{})
	require.EqualError(t, err, `x.parquet: row 2: column "emb.9999": more than 10000 columns: each key, and each element of an array, list or map, is one`)
	cols, err = read(big, drift.ReadOptions{Columns: []string{"emb.999999", "id"}})
	require.NoError(t, err)
	require.Equal(t, "[{emb.999999 [NaN 0] []} {id [1 2] []}]", fmt.Sprint(cols))

	keys := map[string]int64{}
	for i := range drift.MaxColumns {
		keys[fmt.Sprint("k", i)] = 1
	}
	_, err = read(write(row{ID: 1, M: keys}), drift.ReadOptions{})
	require.ErrorContains(t, err, `x.parquet: row 1: column "m.k`)
	require.ErrorContains(t, err, `": more than 10000 columns`)
}

// Go's parquet-go writes lists, maps and repeated fields of other shapes:
// a repeated field outside a list (a Go slice without the list tag), maps
// of structs, and optional structs.
func TestNestedParquetGo(t *testing.T) {
	type point struct {
		X float64 `parquet:"x"`
		Y *string `parquet:"y,optional"`
	}
	type row struct {
		Scores []int32           `parquet:"scores"` // repeated int32
		Points map[string]point  `parquet:"points"`
		Home   *point            `parquet:"home,optional"`
		Hist   map[int64]float64 `parquet:"hist"`
	}
	red := "red"
	rows := []row{
		{Scores: []int32{3, 4}, Points: map[string]point{"a": {1, &red}}, Home: &point{X: 2}, Hist: map[int64]float64{7: 0.5}},
		{Points: map[string]point{}, Hist: map[int64]float64{-1: 1}},
		{Scores: []int32{5}, Home: &point{X: 3, Y: &red}},
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[row](&buf)
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	cols, err := Read("x.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, "[{scores.0 [3 NaN 5] []} {scores.1 [4 NaN NaN] []} {points.a.x [1 NaN NaN] []} {points.a.y [] [red  ]} "+
		"{home.x [2 NaN 3] []} {home.y [] [  red]} {hist.7 [0.5 NaN NaN] []} {hist.-1 [NaN 1 NaN] []}]", fmt.Sprint(cols))
}

// A struct null in every row makes the one column JSON Lines makes of
// {"home": null} on every line, all missing, and none of its fields: the
// same rows give the same columns, and so the same profile, whatever the
// schema names. A struct within one, null in every row, likewise.
func TestNestedStructNullInEveryRow(t *testing.T) {
	type point struct {
		X float64 `parquet:"x"`
		Y *string `parquet:"y,optional"`
	}
	type user struct {
		Age  int64  `parquet:"age"`
		Home *point `parquet:"home,optional"`
	}
	type row struct {
		ID   int64  `parquet:"id"`
		Home *point `parquet:"home,optional"`
		User *user  `parquet:"user,optional"`
	}
	rows := []row{{ID: 1, User: &user{Age: 30}}, {ID: 2}, {ID: 3, User: &user{Age: 40}}}
	jsonl := `{"id": 1, "home": null, "user": {"age": 30, "home": null}}
{"id": 2, "home": null, "user": null}
{"id": 3, "home": null, "user": {"age": 40, "home": null}}
`
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[row](&buf)
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	got, err := Read("x.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{})
	require.NoError(t, err)
	want, err := drift.ReadJSONL("x.jsonl", strings.NewReader(jsonl), drift.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"id", "home", "user.age", "user.home"}, columnNames(want))
	require.Equal(t, fmt.Sprint(want), fmt.Sprint(got))

	opts := drift.DefaultBuildOptions()
	wantProfile, err := drift.BuildProfile(want, opts)
	require.NoError(t, err)
	gotProfile, err := drift.BuildProfile(got, opts)
	require.NoError(t, err)
	require.Equal(t, wantProfile, gotProfile)

	// Asked for by name, a field of a struct null in every row is missing
	// from the data, as from JSON Lines.
	_, err = Read("x.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{Columns: []string{"home.x"}})
	require.EqualError(t, err, `x.parquet: missing column "home.x"`)
}
