package drift

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// fuzzBuild builds a profile from fuzzed columns and exercises it: save and load
// again, window, score. Nothing may panic, and a profile that builds must load.
func fuzzBuild(t *testing.T, cols []Column) {
	p, err := BuildProfile(cols, BuildOptions{Bins: 16, Coarse: 4, TopK: 3, MaxCategories: 5})
	if err != nil {
		return
	}
	var buf bytes.Buffer
	if err := p.Save(&buf); err != nil {
		t.Fatal(err)
	}
	q, err := Load(&buf)
	if err != nil {
		t.Fatalf("a built profile does not load: %v\n%s", err, buf.String())
	}
	d, err := NewDetector(q, Options{Fixed: true, MinSamples: 1})
	if err != nil {
		t.Fatal(err)
	}
	if mv := q.Multivariate; mv != nil {
		// The derived feature's values are the rows' reconstruction errors.
		ec, ok := mv.ErrorColumn(cols)
		if !ok {
			t.Fatal("a multivariate profile has none of its features")
		}
		cols = append(cols, ec)
	}
	for i, f := range q.Features {
		w, err := NewWindow(f, WindowOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := cols[i]
		for j := range c.Len() {
			if c.Num != nil {
				w.Add(t0, c.Num[j])
			} else if v, ok := NonFinite(c.Str[j]); ok {
				w.Add(t0, v) // as exporter drift counts it
			} else {
				w.AddCategory(t0, c.Str[j])
			}
		}
		cur := w.Counts(t0, 0)
		if cur.N() != float64(f.Count) {
			t.Fatalf("feature %q: window has %v values, the reference %d", f.Name, cur.N(), f.Count)
		}
		res, err := d.Score(f.Name, cur)
		if err != nil {
			t.Fatal(err)
		}
		// The reference against itself: no distance, all p-values 1.
		for m, s := range res.Scores {
			if m.HasPValue() || m == MethodPSI {
				continue
			}
			if s > 1e-9 {
				t.Fatalf("feature %q: %s of the reference against itself is %v", f.Name, m, s)
			}
		}
	}
}

func FuzzCSV(f *testing.F) {
	for _, s := range []string{
		"age,city\n31,paris\nNA,oslo\n45,\n",
		"a,b,c\n1,2,3\n4,5\n",
		"x\n1e308\n-1e308\nInf\nNaN\n0x1p-3\n",
		"\ufeffa;b\n\"q\"\"uote\",1\n",
		"a,a\n1,2\n",
		"",
		"v\n0\n0\n0\n1\n",
		"n,c\n1,x\n2,y\n2,y\n3,z\n3,z\n3,w\n-0,v\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, forced bool) {
		opts := ReadOptions{}
		if forced {
			opts.Numeric = []string{"a"}
			opts.Categorical = []string{"b"}
		}
		cols, err := ReadCSV("fuzz.csv", strings.NewReader(in), opts)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.csv") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, c := range cols {
			if c.Len() != cols[0].Len() {
				t.Fatalf("ragged columns")
			}
		}
		fuzzBuild(t, cols)
	})
}

func FuzzJSONL(f *testing.F) {
	for _, s := range []string{
		`{"age": 31, "city": "paris"}` + "\n" + `{"age": null, "user": {"vip": true, "tags": ["a"]}}`,
		`{"a": 1}` + "\n\n" + `{"a": "x"}`,
		`{"a": 1e400, "b": -0}`,
		`[1, 2]`,
		`{"a": 1, "a": 2}`,
		`{"a": {"b": {"c": [[1], [2, 3]]}}}`,
		`{"u": null, "t": [1]}` + "\n" + `{"u": {"a": 1}, "t": null}`,
		``,
		`{"a": 1}` + "\n" + `{"a": 1} x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		cols, err := ReadJSONL("fuzz.jsonl", strings.NewReader(in), ReadOptions{})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.jsonl") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		fuzzBuild(t, cols)
	})
}

func FuzzProfile(f *testing.F) {
	p, err := BuildProfile([]Column{
		{Name: "age", Num: []float64{25, 31, 40, 25, 60, 31, math.NaN()}},
		{Name: "x", Num: []float64{0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.4}},
		{Name: "city", Str: strings.Fields("paris oslo paris lima paris oslo paris")},
	}, BuildOptions{Bins: 4, Coarse: 2, TopK: 2, Discrete: 2})
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.Save(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.String())
	// One with a multivariate part.
	mv, err := BuildProfile(mvColumns(mvData), BuildOptions{Bins: 4, Coarse: 2, Discrete: 2})
	if err != nil || mv.Multivariate == nil {
		f.Fatal("no multivariate profile", err)
	}
	buf.Reset()
	if err := mv.Save(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.String())
	f.Add(`{"version": 1, "features": [{"name": "a", "type": "numeric", "count": 2, "missing": 0, "unique": 2, "numeric": {"mean": 1.5, "std": 0.5, "min": 1, "max": 2,
	  "edges": [1, 1.0000000000000002, 2, 2.0000000000000004], "counts": [0, 1, 0, 1, 0], "coarse_edges": [1, 2.0000000000000004], "tail_means": [1, 2]}},
	  {"name": "c", "type": "categorical", "count": 4, "missing": 1, "unique": 3, "categorical": {"categories": [{"value": "x", "count": 2}], "other": 2, "rare": ["y", "z"], "closed": true}}]}`)
	f.Add(`{"version": 2}`)
	f.Add(`{"version": 1, "features": [{"name": "a", "type": "numeric", "count": 0, "missing": 3, "numeric": {"counts": [0]}}]}`)
	f.Add(`{"version": 1, "features": [{"name": "c", "type": "categorical", "count": 1, "categorical": {"categories": [{"value": "", "count": 1}]}}]}`)
	f.Fuzz(func(t *testing.T, in string) {
		p, err := Load(strings.NewReader(in))
		if err != nil {
			return
		}
		// A profile that loads is usable: windows, checks, scores, calibration.
		d, err := NewDetector(p, Options{MinSamples: 1, Calibration: CalibratorOptions{Rounds: 59, Alpha: 0.05}})
		if err != nil {
			t.Fatal(err)
		}
		if mv := p.Multivariate; mv != nil {
			for _, x := range [][]float64{make([]float64, len(mv.Features)), {math.NaN(), 1e300, -1e300}} {
				x = append(x, make([]float64, len(mv.Features))...)[:len(mv.Features)]
				if e := mv.Error(x); e < 0 {
					t.Fatalf("negative reconstruction error %v", e)
				}
			}
		}
		for _, f := range p.Features {
			w, err := NewWindow(f, WindowOptions{Spans: []time.Duration{time.Minute}, SubWindows: 2})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []float64{-1e300, -1, 0, 0.5, 1, 30, 1e300, math.NaN(), math.Inf(1)} {
				w.Add(t0, v)
				f.Check(v)
			}
			for _, s := range []string{"", "paris", "x", "1"} {
				w.AddCategory(t0, s)
				f.CheckCategory(s)
			}
			f.Bins()
			if _, err := d.Score(f.Name, w.Counts(t0, 0)); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if err := p.Save(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(&buf); err != nil {
			t.Fatalf("a loaded profile does not load again: %v", err)
		}
	})
}
