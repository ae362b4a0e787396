package nonfinite

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// Quote turns the words outside strings into strings encoding/json
// decodes, and Value and Word read them back; strings, keys and escaped
// quotes keep their words.
func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a": 1}`, `{"a": 1}`},
		{`{"a": NaN}`, `{"a": "\u0000NaN"}`},
		{`[Infinity,-Infinity,NaN]`, `["\u0000+Inf","\u0000-Inf","\u0000NaN"]`},
		{`{"NaN": "NaN", "b": "say \"Infinity\"", "c": -Infinity}`, `{"NaN": "NaN", "b": "say \"Infinity\"", "c": "\u0000-Inf"}`},
		{`{"a": "x\\", "b": NaN}`, `{"a": "x\\", "b": "\u0000NaN"}`},
		{`{"a": "unterminated NaN`, `{"a": "unterminated NaN`},
	} {
		require.Equal(t, tc.want, string(Quote([]byte(tc.in))), tc.in)
	}

	var got []any
	require.NoError(t, json.Unmarshal(Quote([]byte(`[NaN, Infinity, -Infinity, "NaN"]`)), &got))
	var nums []float64
	for _, v := range got[:3] {
		x, ok := Value(v.(string))
		require.True(t, ok)
		nums = append(nums, x)
	}
	require.True(t, math.IsNaN(nums[0]))
	require.Equal(t, []float64{math.Inf(1), math.Inf(-1)}, nums[1:])
	_, ok := Value(got[3].(string))
	require.False(t, ok, "a string NaN is a string")
	for i, w := range []string{"NaN", "Infinity", "-Infinity"} {
		word, ok := Word(got[i].(string))
		require.True(t, ok)
		require.Equal(t, w, word)
	}
	_, ok = Word("NaN")
	require.False(t, ok)

	// String gives a number the string Value reads back.
	for i, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		s, ok := String(v)
		require.True(t, ok)
		require.Equal(t, got[i], s)
	}
	_, ok = String(1.5)
	require.False(t, ok, "a finite number has none")
}

// Offset finds, in the text as written, where a syntax error of the
// quoted text is.
func TestOffset(t *testing.T) {
	in := []byte(`{"a": NaN, "b": -Infinity, "c": Infinity, "d": x}`)
	q := Quote(in)
	var se *json.SyntaxError
	require.ErrorAs(t, json.Unmarshal(q, new(any)), &se)
	require.Equal(t, int64(len(`{"a": NaN, "b": -Infinity, "c": Infinity, "d": x`)), Offset(q, se.Offset))
	require.Equal(t, int64(3), Offset(in, 3), "nothing quoted")
}

func TestStringEnd(t *testing.T) {
	b := []byte(`"ab\"c\\" x`)
	require.Equal(t, 8, StringEnd(b, 1))
	require.Equal(t, 3, StringEnd([]byte(`"abc`), 1), "no end")
}
