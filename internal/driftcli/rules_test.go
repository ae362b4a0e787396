package driftcli

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

const testModel = "fraud"

func loadProfile(t *testing.T) *drift.Profile {
	t.Helper()
	p, err := drift.LoadFile("testdata/profile.golden.json")
	require.NoError(t, err)
	return p
}

// writeRules writes p's rules into dir and returns the file's path.
func writeRules(t *testing.T, dir string, p *drift.Profile, opts RulesOptions) string {
	t.Helper()
	out, err := Rules(p, opts)
	require.NoError(t, err)
	path := filepath.Join(dir, "rules.yml")
	require.NoError(t, os.WriteFile(path, out, 0o644))
	return path
}

// The rule file is the golden one, and promtool accepts it.
func TestRules(t *testing.T) {
	c := RulesCommand{Profile: "testdata/profile.golden.json", Model: testModel, Windows: "5m,1h,1d"}
	res := run(t, &c, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Empty(t, res.stderr)
	golden(t, "rules.golden.yml", []byte(res.stdout))

	out, err := exec.Command(prometheustest.Promtool(t), "check", "rules", filepath.Join("testdata", "rules.golden.yml")).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS: 25 rules found")
}

// A feature whose reference changes (another digest of
// modelmon_feature_reference_info) counts again from 0 under the same bin
// labels but other edges: its fleet PSI leaves out the windows that span the
// change, and its PSI since start the time the replicas disagree, while the
// features whose reference stayed count on. testdata/rules.golden.test.yml
// checks it on the golden rules with promtool (as make checkrules does).
func TestRulesReferenceChange(t *testing.T) {
	out, err := exec.Command(prometheustest.Promtool(t), "test", "rules", filepath.Join("testdata", "rules.golden.test.yml")).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS")
}

// Windows and the model shape the rules; the default windows are 5m, 1h, 1d;
// the output can go to a file.
func TestRulesOptions(t *testing.T) {
	p := loadProfile(t)
	out, err := Rules(p, RulesOptions{})
	require.NoError(t, err)
	for _, w := range []string{"5m", "1h", "1d", "total"} {
		require.Contains(t, string(out), "record: "+RulePSI+w+"\n")
	}
	require.Contains(t, string(out), `modelmon_feature_bin_total{feature=~"age|income|city|plan|score"}[1d]`)
	require.NotContains(t, string(out), "model=")

	out, err = Rules(p, RulesOptions{Model: testModel, Windows: []time.Duration{90 * time.Minute}})
	require.NoError(t, err)
	require.Contains(t, string(out), "record: modelmon:feature_drift_psi:1h30m\n")
	require.Contains(t, string(out), `{model="fraud", feature=~"age|income|city|plan|score"}[1h30m]`)
	require.NotContains(t, string(out), "psi:5m")
	_, err = Rules(p, RulesOptions{Windows: []time.Duration{time.Microsecond}})
	require.EqualError(t, err, "window 1µs must be a positive number of milliseconds")
	_, err = Rules(p, RulesOptions{Windows: []time.Duration{}})
	require.EqualError(t, err, "no windows")

	file := filepath.Join(t.TempDir(), "drift.rules.yml")
	c := RulesCommand{Profile: "testdata/profile.golden.json", Windows: "30m", Output: file}
	res := run(t, &c, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Empty(t, res.stdout)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Contains(t, string(b), "record: modelmon:feature_drift_psi:30m\n")

	// Feature names are regular-expression metacharacters escaped, PromQL string
	// escapes included.
	p2, err := drift.BuildProfile([]drift.Column{{Name: `a.b "c"`, Num: []float64{1, 2, 3}}}, drift.BuildOptions{})
	require.NoError(t, err)
	out, err = Rules(p2, RulesOptions{Windows: []time.Duration{5 * time.Minute}})
	require.NoError(t, err)
	require.Contains(t, string(out), `{feature=~"a\\.b \"c\""}`)
}

func TestRulesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  RulesCommand
		want string
	}{
		{"bad window", RulesCommand{Profile: "testdata/profile.golden.json", Windows: "5m,soon"},
			`--windows="5m,soon": "soon" is not a positive duration such as 5m, 1h or 1d`},
		{"zero window", RulesCommand{Profile: "testdata/profile.golden.json", Windows: "0s"},
			`--windows="0s": "0s" is not a positive duration such as 5m, 1h or 1d`},
		{"window twice", RulesCommand{Profile: "testdata/profile.golden.json", Windows: "60m,1h"},
			`window 1h given twice`},
		{"no profile", RulesCommand{Profile: "testdata/nope.json"},
			`open testdata/nope.json: no such file or directory`},
		{"bad profile", RulesCommand{Profile: "testdata/bad-profile.json"},
			`testdata/bad-profile.json: profile version 2 is not supported (want 1)`},
		{"no profile flag", RulesCommand{}, `--profile is required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			res := run(t, &c, "")
			require.Equal(t, ExitError, res.code)
			require.Empty(t, res.stdout)
			require.Equal(t, "exporter rules: "+tc.want+"\n", res.stderr)
		})
	}
}

// replica is one sidecar's bin counters: per feature, per coarse bin label.
type replica map[string]map[string]float64

// rates gives two replicas' counts per minute of every coarse bin, made to
// cover PSI's cases: a bin of the reference without values (its pseudo-count
// matters), a bin outside the reference with values (it is among the k bins),
// bins empty on both sides (left out), bins without a series on one replica or
// on both, and a feature without traffic (no PSI).
func rates(p *drift.Profile) [2]replica {
	r := [2]replica{{}, {}}
	for fi, f := range p.Features {
		r[0][f.Name], r[1][f.Name] = map[string]float64{}, map[string]float64{}
		if f.Name == "plan" {
			continue // no traffic
		}
		bins := f.Bins()
		for i, b := range bins {
			a, c := float64((i*7+fi)%5), float64((i*3+1)%4)
			switch {
			case i == 1:
				a, c = 0, 0 // the reference has values here, the window none
			case b.Count == 0 && i == len(bins)-1 && f.Kind == drift.Numeric:
				a, c = 3, 0 // above the reference range
			case b.Count == 0:
				a, c = 0, 0
			}
			if a > 0 {
				r[0][f.Name][b.Label] = a
			}
			if c > 0 {
				r[1][f.Name][b.Label] = c
			}
		}
	}
	return r
}

// expectedPSI is drift.PSI of the replicas' summed counts, each rate times
// minutes, against the reference's coarse counts; NaN without traffic.
func expectedPSI(f *drift.Feature, reps [2]replica, minutes float64) float64 {
	bins := f.Bins()
	ref, cur := make([]float64, len(bins)), make([]float64, len(bins))
	for i, b := range bins {
		ref[i] = float64(b.Count)
		cur[i] = minutes * (reps[0][f.Name][b.Label] + reps[1][f.Name][b.Label])
	}
	return drift.PSI(ref, cur)
}

// promtool's rule unit tests evaluate the windowed and total PSI on counters
// that grow at known rates, where increase() is exact: each equals drift.PSI
// on the summed counts to 1e-9 relative.
func TestRulesPromtoolUnit(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	p := loadProfile(t)
	dir := t.TempDir()
	writeRules(t, dir, p, RulesOptions{Model: testModel, Windows: []time.Duration{5 * time.Minute, time.Hour}})
	reps := rates(p)

	var b strings.Builder
	b.WriteString("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n")
	for ri, rep := range reps {
		for _, f := range p.Features {
			for _, bin := range f.Bins() {
				if r, ok := rep[f.Name][bin.Label]; ok {
					fmt.Fprintf(&b, "      - series: '%s{model=%q,feature=%q,bin=%q,instance=\"r%d\"}'\n        values: '0+%gx20'\n",
						metricBinTotal, testModel, f.Name, bin.Label, ri, r)
				}
				fmt.Fprintf(&b, "      - series: '%s{model=%q,feature=%q,bin=%q,instance=\"r%d\"}'\n        values: '%sx20'\n",
					metricReferenceRatio, testModel, f.Name, bin.Label, ri, strconv.FormatFloat(bin.Share, 'g', -1, 64))
			}
			fmt.Fprintf(&b, "      - series: '%s{model=%q,feature=%q,instance=\"r%d\"}'\n        values: '%dx20'\n",
				metricReferenceValues, testModel, f.Name, ri, f.Count)
		}
	}
	b.WriteString("    promql_expr_test:\n")
	checks := 0
	for _, w := range []struct {
		suffix  string
		minutes float64
	}{{"5m", 5}, {"1h", 10}, {"total", 10}} {
		for _, f := range p.Features {
			want := expectedPSI(f, reps, w.minutes)
			metric := fmt.Sprintf("%s%s{feature=%q}", RulePSI, w.suffix, f.Name)
			if math.IsNaN(want) {
				fmt.Fprintf(&b, "      - expr: '%s'\n        eval_time: 10m\n        exp_samples: []\n", metric)
				continue
			}
			require.Greater(t, want, 0.0)
			checks++
			fmt.Fprintf(&b, "      - expr: 'abs(%s - %.17g) < bool %g'\n        eval_time: 10m\n        exp_samples:\n          - labels: '{model=%q,feature=%q}'\n            value: 1\n",
				metric, want, 1e-9*want, testModel, f.Name)
		}
	}
	require.Equal(t, 12, checks, "every feature but plan has a PSI")
	// The reference counts are the profile's, recovered from ratio × values.
	for _, f := range p.Features[:1] {
		for _, bin := range f.Bins() {
			fmt.Fprintf(&b, "      - expr: '%s{feature=%q,bin=%q}'\n        eval_time: 10m\n        exp_samples:\n          - labels: '%s{model=%q,feature=%q,bin=%q}'\n            value: %d\n",
				RuleReferenceCount, f.Name, bin.Label, RuleReferenceCount, testModel, f.Name, bin.Label, bin.Count)
		}
	}
	test := filepath.Join(dir, "rules_test.yml")
	require.NoError(t, os.WriteFile(test, []byte(b.String()), 0o644))
	out, err := exec.Command(promtool, "test", "rules", test).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, b.String())
	require.Contains(t, string(out), "SUCCESS")
}

// A real Prometheus scrapes two replicas' bin counters, loads the generated
// rules, and records for each feature the PSI of the summed counts: drift.PSI
// to 1e-9 relative. The counters do not move, so the 5m window has no value
// and no PSI. Every rule evaluates without error.
func TestRulesPrometheus(t *testing.T) {
	prometheustest.Binary(t)
	p := loadProfile(t)
	// Each replica counts half of the shifted data, as the sidecar would.
	data, err := os.ReadFile("testdata/current-shifted.csv")
	require.NoError(t, err)
	lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
	header, rows := lines[0], lines[1:]
	halves := [2]string{header + strings.Join(rows[:150], ""), header + strings.Join(rows[150:], "")}
	var targets []string
	var totals [2]map[string][]uint64
	for i, half := range halves {
		cols, err := drift.ReadCSV("half", strings.NewReader(half), drift.ReadOptions{Categorical: []string{"city", "plan"}})
		require.NoError(t, err)
		totals[i] = map[string][]uint64{}
		for _, f := range p.Features {
			_, tot, err := count(f, findColumn(cols, f.Name))
			require.NoError(t, err)
			totals[i][f.Name] = tot.Bins
		}
		srv := httptest.NewServer(exposition(p, totals[i]))
		t.Cleanup(srv.Close)
		targets = append(targets, strings.TrimPrefix(srv.URL, "http://"))
	}
	dir := t.TempDir()
	prom := prometheustest.Start(t, prometheustest.Options{
		Targets:   targets,
		RuleFiles: []string{writeRules(t, dir, p, RulesOptions{Model: testModel})},
	})

	want := map[string]float64{}
	for _, f := range p.Features {
		bins := f.Bins()
		ref, cur := make([]float64, len(bins)), make([]float64, len(bins))
		for i, b := range bins {
			ref[i] = float64(b.Count)
			cur[i] = float64(totals[0][f.Name][i] + totals[1][f.Name][i])
		}
		want[f.Name] = drift.PSI(ref, cur)
	}
	require.Greater(t, want["age"], 0.25, "age shifted")
	require.Less(t, want["plan"], 0.1, "plan did not")

	// Until Prometheus has scraped both replicas, the sum holds one.
	var mismatch string
	require.Eventually(t, func() bool {
		got, err := prom.Query("modelmon:feature_drift_psi:total")
		if err != nil || len(got) != len(want) {
			mismatch = fmt.Sprintf("%v, err %v", got, err)
			return false
		}
		for _, s := range got {
			if w := want[s.Metric["feature"]]; s.Metric["model"] != testModel || math.Abs(s.Value-w) > 1e-9*w {
				mismatch = fmt.Sprintf("%v: got %v, want %v", s.Metric, s.Value, w)
				return false
			}
		}
		return true
	}, 60*time.Second, 250*time.Millisecond, "modelmon:feature_drift_psi:total is not drift.PSI: %s", lazy{&mismatch})
	v, err := prom.Query("modelmon:feature_drift_psi:5m")
	require.NoError(t, err)
	require.Empty(t, v, "no increase in the window, no PSI")
	v, err = prom.Query(`modelmon:feature_bin:increase5m{feature="age"}`)
	require.NoError(t, err)
	require.Len(t, v, len(p.Features[0].Bins()), "every bin of the reference, at 0")

	resp, err := http.Get(prom.URL + "/api/v1/rules")
	require.NoError(t, err)
	defer resp.Body.Close()
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				}
			}
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rules))
	require.Len(t, rules.Data.Groups, 1)
	require.Len(t, rules.Data.Groups[0].Rules, 25)
	for _, r := range rules.Data.Groups[0].Rules {
		require.Equal(t, "ok", r.Health, "%s: %s", r.Name, r.LastError)
	}
}

// lazy formats a string as it is when printed: an assertion's last state.
type lazy struct{ s *string }

func (l lazy) String() string { return *l.s }

// exposition serves one replica's series of the four metrics the rules read.
func exposition(p *drift.Profile, totals map[string][]uint64) http.Handler {
	var b strings.Builder
	b.WriteString("# TYPE " + metricBinTotal + " counter\n")
	for _, f := range p.Features {
		for i, bin := range f.Bins() {
			fmt.Fprintf(&b, "%s{model=%q,feature=%q,bin=%q} %d\n", metricBinTotal, testModel, f.Name, bin.Label, totals[f.Name][i])
		}
	}
	b.WriteString("# TYPE " + metricReferenceRatio + " gauge\n")
	for _, f := range p.Features {
		for _, bin := range f.Bins() {
			fmt.Fprintf(&b, "%s{model=%q,feature=%q,bin=%q} %s\n", metricReferenceRatio, testModel, f.Name, bin.Label, strconv.FormatFloat(bin.Share, 'g', -1, 64))
		}
	}
	b.WriteString("# TYPE " + metricReferenceValues + " gauge\n")
	for _, f := range p.Features {
		fmt.Fprintf(&b, "%s{model=%q,feature=%q} %d\n", metricReferenceValues, testModel, f.Name, f.Count)
	}
	b.WriteString("# TYPE " + metricReferenceInfo + " gauge\n")
	for _, f := range p.Features {
		role := "input"
		if f.Prediction {
			role = "prediction"
		}
		fmt.Fprintf(&b, "%s{model=%q,feature=%q,digest=\"%x\",role=%q} 1\n", metricReferenceInfo, testModel, f.Name, len(f.Name), role)
	}
	body := b.String()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(body))
	})
}
