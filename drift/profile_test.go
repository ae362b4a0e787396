package drift

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSaveLoad(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 7))
	c := strings.Fields(strings.Repeat("a b c a b a a d ", 375))
	y := make([]float64, len(c))
	for i := range y {
		y[i] = float64(r.IntN(2))
	}
	p, err := BuildProfile([]Column{{Name: "x", Num: draw(r, samplers[5], len(c))}, {Name: "c", Str: c}, {Name: "y", Num: y}},
		BuildOptions{Prediction: "y"})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, p.Save(&buf))
	q, err := Load(&buf)
	require.NoError(t, err)
	require.Equal(t, p.Features, q.Features)
	f, ok := q.Feature("c")
	require.True(t, ok)
	require.Equal(t, "c", f.Name)
	_, ok = q.Feature("nope")
	require.False(t, ok)
}

// TestDocExample loads the profile shown in doc.go, so that the documentation stays
// valid.
func TestDocExample(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	var js strings.Builder
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case line == "//\t{":
			in = true
		case in && !strings.HasPrefix(line, "//\t"):
			in = false
		}
		if in {
			js.WriteString(strings.TrimPrefix(line, "//\t") + "\n")
		}
	}
	require.NotEmpty(t, js.String())
	p, err := Load(strings.NewReader(js.String()))
	require.NoError(t, err)
	require.Len(t, p.Features, 3)
	require.True(t, p.Features[2].Prediction)
}

func TestLoadErrors(t *testing.T) {
	good := `{"name": "a", "type": "numeric", "count": 2, "missing": 0, "unique": 2, "numeric": {"mean": 1.5, "std": 0.5, "min": 1, "max": 2,
	  "edges": [1, 1.0000000000000002, 2, 2.0000000000000004], "counts": [0, 1, 0, 1, 0], "coarse_edges": [1, 2.0000000000000004], "tail_means": [1, 2]}}`
	_, err := Load(strings.NewReader(`{"version": 1, "features": [` + good + `]}`))
	require.NoError(t, err)
	for _, tc := range []struct {
		name, json, err string
	}{
		{"version 2", `{"version": 2, "features": []}`, "profile version 2 is not supported (want 1)"},
		{"no version", `{"features": []}`, "profile has no version (want 1)"},
		{"syntax", "{\"version\": 1,\n \"features\": [}", "line 2: invalid profile: invalid character '}' looking for beginning of value"},
		{"type", `{"version": "1"}`, "line 1: invalid profile: json: cannot unmarshal string into Go struct field .version of type int"},
		{"unknown field", `{"version": 1, "features": [], "extra": 1}`, `invalid profile: json: unknown field "extra"`},
		{"trailing", `{"version": 1, "features": []} {}`, "line 1: invalid profile: invalid character '{' after top-level value"},
		{"duplicate", `{"version": 1, "features": [` + good + `, ` + good + `]}`, `feature "a": duplicate name`},
		{"kind", `{"version": 1, "features": [{"name": "a", "type": "text"}]}`, `feature "a": unknown type "text" (want numeric or categorical)`},
		{"missing part", `{"version": 1, "features": [{"name": "a", "type": "numeric"}]}`, `feature "a": type "numeric" needs "numeric" and no "categorical"`},
		{"counts", strings.Replace(`{"version": 1, "features": [`+good+`]}`, `"count": 2`, `"count": 3`, 1), `feature "a": bin counts add up to 2, want count 3`},
		{"edges", strings.Replace(`{"version": 1, "features": [`+good+`]}`, `[1, 1.0000000000000002, 2,`, `[1, 2, 1.5,`, 1), `feature "a": edges not increasing at 2`},
		{"out of range counts", strings.Replace(strings.Replace(`{"version": 1, "features": [`+good+`]}`, `[0, 1, 0, 1, 0]`, `[1, 1, 0, 1, 0]`, 1), `"count": 2`, `"count": 3`, 1),
			`feature "a": the below- and above-range bins must be empty in the reference`},
		{"coarse", strings.Replace(`{"version": 1, "features": [`+good+`]}`, `"coarse_edges": [1, 2.0000000000000004]`, `"coarse_edges": [1, 1.5, 2.0000000000000004]`, 1),
			`feature "a": coarse edges must be increasing and a subset of the edges`},
		{"categories", `{"version": 1, "features": [{"name": "c", "type": "categorical", "count": 3, "missing": 0, "unique": 2,
			"categorical": {"categories": [{"value": "x", "count": 1}, {"value": "x", "count": 2}], "other": 0, "closed": true}}]}`, `feature "c": category "x": duplicate`},
		{"category named other", `{"version": 1, "features": [{"name": "c", "type": "categorical", "count": 3, "missing": 0, "unique": 2,
			"categorical": {"categories": [{"value": "x", "count": 1}, {"value": "__other__", "count": 2}], "other": 0, "closed": true}}]}`,
			`feature "c": category "__other__": the other bin's label, not a category (rare, or in other)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.json))
			require.EqualError(t, err, tc.err)
		})
	}
}

func TestLoadFile(t *testing.T) {
	path := t.TempDir() + "/profile.json"
	require.NoError(t, os.WriteFile(path, []byte(`{"version": 2}`), 0o600))
	_, err := LoadFile(path)
	require.EqualError(t, err, path+": profile version 2 is not supported (want 1)")
	_, err = LoadFile(path + ".missing")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestBin checks the guided search against the plain one, with values on, next to
// and between edges, and edges a few ulps apart.
func TestBin(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, s := range samplers {
		x := draw(r, s, 20_000)
		// Adjacent floats, as values.
		for i := range 50 {
			x[i] = math.Nextafter(x[50+i], math.Inf(1))
		}
		f := numericProfile(t, x).Features[0]
		e := f.Numeric.Edges
		probe := append([]float64{}, x[:2000]...)
		for _, v := range e {
			probe = append(probe, v, math.Nextafter(v, math.Inf(-1)), math.Nextafter(v, math.Inf(1)))
		}
		for range 2000 {
			probe = append(probe, e[0]+(e[len(e)-1]-e[0])*r.Float64())
		}
		for _, v := range probe {
			require.Equal(t, upperBound(e, v), f.bin(v), "%s: v=%v", s.name, v)
		}
	}
}

func TestUpperBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for n := range 40 {
		a := make([]float64, n)
		for i := range a {
			a[i] = float64(i) * 1.5
		}
		for range 50 {
			v := r.Float64()*float64(n)*1.5 + r.Float64()*3 - 1.5
			if r.IntN(3) == 0 && n > 0 {
				v = a[r.IntN(n)]
			}
			want := 0
			for want < n && a[want] <= v {
				want++
			}
			require.Equal(t, want, upperBound(a, v), "n=%d v=%v", n, v)
		}
	}
	require.Equal(t, 0, upperBound([]float64{1, 2}, math.Inf(-1)))
	require.Equal(t, 2, upperBound([]float64{1, 2}, math.Inf(1)))
}
