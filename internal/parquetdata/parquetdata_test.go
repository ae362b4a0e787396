package parquetdata

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
)

func readFile(t *testing.T, name string, opts drift.ReadOptions) ([]drift.Column, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return Read(name, bytes.NewReader(b), int64(len(b)), opts)
}

func byName(cols []drift.Column) map[string]drift.Column {
	m := map[string]drift.Column{}
	for _, c := range cols {
		m[c.Name] = c
	}
	return m
}

// The files of Apache's parquet-testing (as parquet-go ships them), written
// by Impala and others, read as their README and Arrow's tests describe
// them.
func TestParquetTesting(t *testing.T) {
	for _, file := range []string{"alltypes_plain.parquet"} {
		cols, err := readFile(t, file, drift.ReadOptions{})
		require.NoError(t, err)
		c := byName(cols)
		require.Equal(t, []float64{4, 5, 6, 7, 2, 3, 0, 1}, c["id"].Num)
		require.Equal(t, []float64{1, 0, 1, 0, 1, 0, 1, 0}, c["bool_col"].Num)
		require.Equal(t, []float64{0, 10, 0, 10, 0, 10, 0, 10}, c["bigint_col"].Num)
		require.Equal(t, []float64{0, float64(float32(1.1)), 0, float64(float32(1.1)), 0, float64(float32(1.1)), 0, float64(float32(1.1))}, c["float_col"].Num)
		require.Equal(t, []float64{0, 10.1, 0, 10.1, 0, 10.1, 0, 10.1}, c["double_col"].Num)
		// Binary without a UTF8 annotation, as Impala writes text, is
		// categorical, even where it looks like numbers.
		require.Equal(t, []string{"03/01/09", "03/01/09", "04/01/09", "04/01/09", "02/01/09", "02/01/09", "01/01/09", "01/01/09"}, c["date_string_col"].Str)
		require.Equal(t, []string{"0", "1", "0", "1", "0", "1", "0", "1"}, c["string_col"].Str)
		require.Nil(t, c["string_col"].Num)
		// INT96 timestamps: 2009-03-01 00:00:00 UTC is 1235865600, a minute
		// apart in each pair.
		require.Equal(t, []float64{1235865600, 1235865660, 1238544000, 1238544060, 1233446400, 1233446460, 1230768000, 1230768060}, c["timestamp_col"].Num)
	}
	// Snappy-compressed, the rows with id 6 and 7.
	cols, err := readFile(t, "alltypes_plain.snappy.parquet", drift.ReadOptions{Columns: []string{"id", "string_col"}})
	require.NoError(t, err)
	require.Equal(t, "[{id [6 7] []} {string_col [] [0 1]}]", fmt.Sprint(cols))

	// DECIMAL(4,2) in INT32, DECIMAL(10,2) in INT64, in a byte array and in
	// a fixed-length byte array (25 digits): 1.00 to 24.00.
	var want []float64
	for i := 1; i <= 24; i++ {
		want = append(want, float64(i))
	}
	for _, file := range []string{"int32_decimal.parquet", "int64_decimal.parquet", "byte_array_decimal.parquet", "fixed_length_decimal.parquet"} {
		cols, err := readFile(t, file, drift.ReadOptions{})
		require.NoError(t, err, file)
		require.Equal(t, want, byName(cols)["value"].Num, file)
	}

	// Nulls in a nested group are missing; the column is named by its path.
	cols, err = readFile(t, "nulls.snappy.parquet", drift.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, "b_struct.b_c_int", cols[0].Name)
	for _, v := range cols[0].Num {
		require.True(t, drift.IsNA(v))
	}
	// Lists are a column per element, as JSON Lines' arrays: the rows are
	// {"int64_list": [1, 2, 3], "utf8_list": ["abc", "efg", "hij"]},
	// {"int64_list": [null, 1], "utf8_list": null} and
	// {"int64_list": [4], "utf8_list": ["efg", null, "hij", "xyz"]}.
	cols, err = readFile(t, "list_columns.parquet", drift.ReadOptions{})
	require.NoError(t, err)
	require.Equal(t, "[{int64_list.0 [1 NaN 4] []} {int64_list.1 [2 1 NaN] []} {int64_list.2 [3 NaN NaN] []} "+
		"{utf8_list.0 [] [abc  efg]} {utf8_list.1 [] [efg  ]} {utf8_list.2 [] [hij  hij]} {utf8_list.3 [] [  xyz]}]", fmt.Sprint(cols))

	cols, err = readFile(t, "single_nan.parquet", drift.ReadOptions{})
	require.NoError(t, err)
	require.True(t, drift.IsNA(cols[0].Num[0]), "a null, whatever its name")
}

// NaN and ±Inf in float and double columns are those numbers, not missing
// values: `exporter drift` counts them as "nan" and "inf" violations, as
// it does in CSV and JSON Lines and as the sidecar does. A null is missing.
func TestNonFinite(t *testing.T) {
	type row struct {
		D *float64 `parquet:"d,optional"`
		F *float32 `parquet:"f,optional"`
	}
	var rows []row
	for _, x := range []float64{1.5, math.NaN(), math.Inf(1), math.Inf(-1)} {
		f := float32(x)
		rows = append(rows, row{&x, &f})
	}
	rows = append(rows, row{})
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[row](&buf)
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	cols, err := Read("batch.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{})
	require.NoError(t, err)
	want := []float64{1.5, math.NaN(), math.Inf(1), math.Inf(-1), drift.NA()}
	requireNums(t, want, byName(cols)["d"].Num)
	requireNums(t, want, byName(cols)["f"].Num)

	// Read as categorical (`exporter drift` against a profile that has
	// the feature so), they are still numbers, not the categories "NaN"
	// and "+Inf", as the sidecar counts a NaN sent for a categorical
	// feature as a "nan".
	cols, err = Read("batch.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{Categorical: []string{"d"}})
	require.NoError(t, err)
	d := byName(cols)["d"].Str
	require.Equal(t, []string{"1.5", ""}, []string{d[0], d[4]})
	for i, x := range want[1:4] {
		v, ok := drift.NonFinite(d[i+1])
		require.True(t, ok, "value %d: %q", i+1, d[i+1])
		require.Equal(t, math.Float64bits(x), math.Float64bits(v))
	}
}

// A map's float keys NaN and ±Inf name their columns as text, "NaN",
// "+Inf" and "-Inf".
func TestNonFiniteMapKeys(t *testing.T) {
	type row struct {
		M map[float64]int64 `parquet:"m"`
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[row](&buf)
	_, err := w.Write([]row{{M: map[float64]int64{math.Inf(1): 1, math.Inf(-1): 2, 0.5: 3}}})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	cols, err := Read("x.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"m.+Inf", "m.-Inf", "m.0.5"}, columnNames(cols))
}

// FLOAT16 and TIME columns, as Apache Arrow writes them
// (testdata/float16_time/main.go wrote the file): half-precision numbers,
// and times of day in seconds since midnight whatever their unit, as
// timestamps are in seconds since the epoch. NaN and ±Inf are those
// numbers, as in the other float columns; a null is missing.
func TestFloat16AndTime(t *testing.T) {
	cols, err := readFile(t, "float16_time.parquet", drift.ReadOptions{})
	require.NoError(t, err)
	c := byName(cols)
	nan, na := math.NaN(), drift.NA()
	requireNums(t, []float64{
		1.5, -2.25, 65504, // the largest half
		math.Ldexp(1, -14), // the smallest normal
		math.Ldexp(1, -24), // the smallest subnormal
		0,
		-1023 * math.Ldexp(1, -24),         // the largest subnormal, negative
		0.0999755859375,                    // 0.1 in half precision
		nan, math.Inf(1), math.Inf(-1), na, // NaN, +Inf, -Inf, null
	}, c["f16"].Num)
	requireNums(t, []float64{49530.25, 0, 86399.999, 0.001, 0.5, 3600, 60, 43200, 1, 2, 3, na}, c["time_ms"].Num)
	requireNums(t, []float64{49530.250007, 0.000007, 86399.999007, 0.001007, 0.500007, 3600.000007, 60.000007, 43200.000007, 1.000007, 2.000007, 3.000007, na}, c["time_us"].Num)
	requireNums(t, []float64{49530.250000009, 0.000000009, 86399.999000009, 0.001000009, 0.500000009, 3600.000000009, 60.000000009, 43200.000000009, 1.000000009, 2.000000009, 3.000000009, na}, c["time_ns"].Num)

	// Forced categorical, a half is its number as text, not its bytes.
	cols, err = readFile(t, "float16_time.parquet", drift.ReadOptions{Columns: []string{"f16"}, Categorical: []string{"f16"}})
	require.NoError(t, err)
	require.Equal(t, []string{"1.5", "-2.25", "65504"}, cols[0].Str[:3])
}

func TestHalfFloat(t *testing.T) {
	for bits, want := range map[uint16]float64{
		0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0x0400: math.Ldexp(1, -14), 0x0001: math.Ldexp(1, -24),
		0x03ff: 1023 * math.Ldexp(1, -24), 0x3555: 0.333251953125, 0x0000: 0, 0x7c00: math.Inf(1), 0xfc00: math.Inf(-1),
	} {
		require.Equal(t, want, halfFloat([]byte{byte(bits), byte(bits >> 8)}), "%#04x", bits)
	}
	require.Equal(t, math.Copysign(0, -1), halfFloat([]byte{0, 0x80}))
	require.True(t, math.Signbit(halfFloat([]byte{0, 0x80})))
	require.True(t, math.IsNaN(halfFloat([]byte{0x01, 0x7c})))
	require.True(t, math.IsNaN(halfFloat([]byte{1})))
}

// requireNums compares numbers within rounding: a missing value
// (drift.NA), a NaN that is not one, and ±Inf exactly.
func requireNums(t *testing.T, want, got []float64) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		switch {
		case drift.IsNA(want[i]):
			require.True(t, drift.IsNA(got[i]), "value %d: %v, want missing", i, got[i])
		case math.IsNaN(want[i]):
			require.True(t, math.IsNaN(got[i]) && !drift.IsNA(got[i]), "value %d: %v, want a NaN that is not missing", i, got[i])
		case math.IsInf(want[i], 0):
			require.Equal(t, want[i], got[i], "value %d", i)
		default:
			require.InDelta(t, want[i], got[i], 1e-15*math.Max(1, math.Abs(want[i])), "value %d", i)
		}
	}
}

func TestParquetErrors(t *testing.T) {
	// A list's elements are named by their index, not by the schema's
	// path to its leaf.
	_, err := readFile(t, "list_columns.parquet", drift.ReadOptions{Columns: []string{"int64_list.list.item"}})
	require.EqualError(t, err, `list_columns.parquet: missing column "int64_list.list.item"`)
	_, err = Read("train.parquet", strings.NewReader("a,b\n1,2\n"), 8, drift.ReadOptions{})
	require.ErrorContains(t, err, "train.parquet: not a Parquet file")
	_, err = readFile(t, "alltypes_plain.parquet", drift.ReadOptions{Columns: []string{"nope"}})
	require.EqualError(t, err, `alltypes_plain.parquet: missing column "nope"`)
	// A string column forced numeric.
	_, err = readFile(t, "alltypes_plain.parquet", drift.ReadOptions{Numeric: []string{"date_string_col"}})
	require.EqualError(t, err, `alltypes_plain.parquet: row 1: column "date_string_col": "03/01/09" is not a number`)
}

// trainingRow is a row of a training set as pandas writes it: nullable
// numbers, strings, a boolean.
type trainingRow struct {
	Amount  *float64 `parquet:"amount,optional"`
	Age     *int64   `parquet:"age,optional"`
	Country *string  `parquet:"country,optional"`
	Zip     string   `parquet:"zip"`
	Fraud   bool     `parquet:"fraud"`
}

// A profile built from Parquet is the profile built from the same data as
// CSV (with the string column that looks numeric forced categorical, as the
// Parquet schema says it is).
func TestProfileLikeCSV(t *testing.T) {
	var rows []trainingRow
	var csv strings.Builder
	csv.WriteString("amount,age,country,zip,fraud\n")
	countries := []string{"DE", "FR", "US", "PL"}
	for i := range 500 {
		r := trainingRow{Zip: fmt.Sprintf("%05d", i%37), Fraud: i%11 == 0}
		amount, age, country := math.Exp(float64(i%97)/20), int64(18+i%60), countries[i%len(countries)]
		line := []string{fmt.Sprint(amount), fmt.Sprint(age), country, r.Zip, map[bool]string{true: "1", false: "0"}[r.Fraud]}
		if i%13 != 0 {
			r.Amount = &amount
		} else {
			line[0] = ""
		}
		if i%17 != 0 {
			r.Age = &age
		} else {
			line[1] = ""
		}
		if i%19 != 0 {
			r.Country = &country
		} else {
			line[2] = ""
		}
		rows = append(rows, r)
		csv.WriteString(strings.Join(line, ",") + "\n")
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[trainingRow](&buf, parquet.MaxRowsPerRowGroup(128))
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())

	fromParquet, err := Read("train.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{})
	require.NoError(t, err)
	fromCSV, err := drift.ReadCSV("train.csv", strings.NewReader(csv.String()), drift.ReadOptions{Categorical: []string{"zip"}})
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(fromCSV), fmt.Sprint(fromParquet))

	opts := drift.BuildOptions{}
	want, err := drift.BuildProfile(fromCSV, opts)
	require.NoError(t, err)
	got, err := drift.BuildProfile(fromParquet, opts)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// Files written with each codec parquet-go writes, in several row groups,
// read alike. parquet-go's zstd frames state a window larger than a small
// page (1 KiB at least), as streaming encoders do: such a page is sound.
func TestCodecs(t *testing.T) {
	type row struct {
		I8  int8     `parquet:"i8"`
		U32 uint32   `parquet:"u32"`
		F64 *float64 `parquet:"f64,optional"`
		S   string   `parquet:"s,dict"`
		D   int32    `parquet:"d,date"`
	}
	var rows []row
	for i := range 300 {
		f := float64(i) / 4
		r := row{I8: int8(-i), U32: 4_000_000_000, S: fmt.Sprint("c", i%3), D: int32(i)}
		if i%7 != 0 {
			r.F64 = &f
		}
		rows = append(rows, r)
	}
	for _, codec := range []compress.Codec{&parquet.Uncompressed, &parquet.Snappy, &parquet.Gzip, &parquet.Zstd, &parquet.Lz4Raw, &parquet.Brotli} {
		t.Run(codec.String(), func(t *testing.T) {
			var buf bytes.Buffer
			w := parquet.NewGenericWriter[row](&buf, parquet.MaxRowsPerRowGroup(100), parquet.Compression(codec))
			_, err := w.Write(rows)
			require.NoError(t, err)
			require.NoError(t, w.Close())
			cols, err := Read("x.parquet", bytes.NewReader(buf.Bytes()), int64(buf.Len()), drift.ReadOptions{})
			require.NoError(t, err)
			c := byName(cols)
			require.Len(t, c["i8"].Num, 300)
			require.Equal(t, []float64{0, -1, -43}, []float64{c["i8"].Num[0], c["i8"].Num[1], c["i8"].Num[299]})
			require.Equal(t, 4e9, c["u32"].Num[299])
			require.True(t, math.IsNaN(c["f64"].Num[0]))
			require.Equal(t, 74.75, c["f64"].Num[299])
			require.Equal(t, "c2", c["s"].Str[299])
			require.Equal(t, 299.0, c["d"].Num[299])
		})
	}
}

// A zstd page is still held to the size it states.
func TestZstdPageSize(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	page := enc.EncodeAll(bytes.Repeat([]byte("modelmon"), 1000), nil)
	var d decoders
	defer d.close()
	require.NoError(t, d.decompress(format.Zstd, make([]byte, 8000), page))
	require.Error(t, d.decompress(format.Zstd, make([]byte, 7999), page))
	require.EqualError(t, d.decompress(format.Zstd, make([]byte, 8001), page), "8000 bytes")
}
