package exporter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/driftcli"
	"github.com/modelmon/modelmon/internal/driftref"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

// agreeReference writes n rows of training data: a and b that go together
// (so the profile has a multivariate drift feature), a city among 25 of
// skewed frequency (the 5 rarest share __other__), a binary plan and the
// model's score.
func agreeReference(t *testing.T, n int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(21, 22))
	var b strings.Builder
	b.WriteString("a,b,city,plan,score\n")
	for range n {
		a := rng.NormFloat64()
		fmt.Fprintf(&b, "%.4f,%.4f,%s,%s,%.3f\n", a, 2*a+0.5*rng.NormFloat64(), agreeCity(rng), []string{"basic", "pro", "pro"}[rng.IntN(3)], rng.Float64())
	}
	path := filepath.Join(t.TempDir(), "train.csv")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// agreeCity draws one of C00…C24, C00 the most frequent.
func agreeCity(rng *rand.Rand) string {
	return fmt.Sprintf("C%02d", int(25*math.Pow(rng.Float64(), 2)))
}

// agreeBatch returns n records as the sidecar's observations and the same
// data as JSON Lines for `exporter drift`. They are shifted a little and
// carry what may be counted differently: missing and absent values, NaN,
// infinity and "NA" as text, numbers as text, values out of the reference's
// range, unseen, rare, differently cased or padded categories, categories
// given as numbers, "null" and "NaN" as text, a category named
// "__other__", NaN and -Infinity as Python's json.dumps writes them (bare
// words, numbers), in numeric and categorical features, and predictions
// out of range, missing or NaN.
func agreeBatch(t *testing.T, model string, n int, shift float64, seed uint64) (push, jsonl string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 23))
	var p, j strings.Builder
	for i := range n {
		a := rng.NormFloat64() + shift
		feats := map[string]any{
			"a":    a,
			"b":    2*a + 0.5*rng.NormFloat64(),
			"city": agreeCity(rng),
			"plan": []string{"basic", "pro", "pro"}[rng.IntN(3)],
		}
		switch i % 23 {
		case 0:
			feats["a"] = nil
		case 1:
			delete(feats, "a")
		case 2:
			feats["a"] = "NaN"
		case 3:
			feats["a"] = fmt.Sprint(a) // a number as text
		case 4:
			feats["a"] = 1e6 // out of range
		case 5:
			feats["city"] = "ZZ" // unseen
		case 6:
			feats["city"] = " C01" // padded
		case 7:
			feats["city"] = "c01" // lower case
		case 8:
			feats["city"] = 7 // a number
		case 9:
			feats["city"] = nil
		case 10:
			delete(feats, "city")
		case 11:
			delete(feats, "a")
			delete(feats, "b")
		case 12:
			feats["plan"] = true
		case 13:
			feats["b"] = "NA" // in JSON a string, not a number
		case 14:
			feats["city"] = "null" // in JSON a string, not null
			feats["plan"] = "NaN"  // a string, a category
		case 15:
			feats["city"] = drift.OtherLabel // a category so named
		case 16:
			feats["a"] = "Infinity"
		case 19:
			feats["a"] = bareNaN
		case 20:
			feats["b"] = bareNegInf
		case 22:
			feats["city"] = bareNaN // a number, for a categorical feature
			feats["plan"] = bareNegInf
		}
		var score any = rng.Float64()
		switch i % 23 {
		case 17:
			score = 2.0 // out of range
		case 18:
			score = nil
		case 21:
			score = bareNaN
		}
		line, err := json.Marshal(map[string]any{"model": model, "features": feats, "prediction": score})
		require.NoError(t, err)
		p.Write(bare(line))
		p.WriteByte('\n')
		feats["score"] = score
		line, err = json.Marshal(feats)
		require.NoError(t, err)
		j.Write(bare(line))
		j.WriteByte('\n')
	}
	return p.String(), j.String()
}

// bareNaN and bareNegInf stand, in agreeBatch's values, for the words NaN
// and -Infinity that Python's json.dumps writes and encoding/json can't.
const bareNaN, bareNegInf = "\x00bare NaN", "\x00bare -Infinity"

// bare returns line, JSON, with bareNaN and bareNegInf the words they stand for.
func bare(line []byte) []byte {
	return []byte(strings.NewReplacer(`"\u0000bare NaN"`, "NaN", `"\u0000bare -Infinity"`, "-Infinity").Replace(string(line)))
}

// The same batch sent through the sidecar (one window) and given to
// `exporter drift` against the same reference gets the same scores,
// p-values, thresholds and decisions per feature, and the same dataset
// verdict: the README says both count into the profile's bins alike and
// score with the same detector.
func TestDriftLiveAgreesWithOffline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rows  int // reference rows: ≤ 1000 decide by tests, more by distances
		shift float64
	}{
		{"distances, clean", 3000, 0},
		{"distances, shifted", 3000, 0.3},
		{"tests, shifted", 800, 0.3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := agreeReference(t, tc.rows)
			e := startExporter(t, modelServer(t).URL, func(o *Options) { o.Drift = driftOptions(ref) })
			push, jsonl := agreeBatch(t, "m", 600, tc.shift, uint64(tc.rows))
			pushRecordsRaw(t, e, strings.Split(strings.TrimSpace(push), "\n")...)
			cur := filepath.Join(t.TempDir(), "batch.jsonl")
			require.NoError(t, os.WriteFile(cur, []byte(jsonl), 0o644))

			c := driftcli.DriftCommand{Reference: ref, Current: cur, MinSamples: 50, Build: driftcli.BuildFlags{Prediction: "score"}}
			r, err := c.Report(driftcli.Env{})
			require.NoError(t, err)
			live := func(name string, labels map[string]string) float64 {
				l := map[string]string{"model": "m", "window": "1h"}
				for k, v := range labels {
					l[k] = v
				}
				return metricValue(t, e, name, l)
			}
			gauges := map[string]string{
				"psi": collector.FeatureDriftPSI, "jensenshannon": collector.FeatureDriftJS, "hellinger": collector.FeatureDriftHellinger,
				"ks": collector.FeatureDriftKS, "wasserstein": collector.FeatureDriftWasserstein, "missing": collector.FeatureDriftMissingDelta,
			}
			names := map[string]bool{}
			for _, f := range r.Features {
				name := f.Name
				names[f.Name] = true
				fl := map[string]string{"feature": name}
				require.True(t, f.Ready, "%s: %s", f.Name, f.Reason)
				require.Equal(t, float64(f.N), live(collector.FeatureDriftWindowValues, fl), "%s: values", f.Name)
				for method, want := range f.Scores {
					g, ok := gauges[method]
					if !ok {
						continue
					}
					require.InDelta(t, want, live(g, fl), 1e-9*math.Max(1, math.Abs(want)), "%s: %s", f.Name, method)
				}
				ml := map[string]string{"feature": name, "method": string(f.Method)}
				require.Equal(t, boolValue(f.Drifted), live(collector.FeatureDrifted, ml), "%s: drifted by %s (%s)", f.Name, f.Method, f.Reason)
				if f.PValue != nil {
					pv := map[drift.Method]string{drift.MethodKS: collector.FeatureDriftKSPValue, drift.MethodChiSquare: collector.FeatureDriftChiSqPValue,
						drift.MethodZ: collector.FeatureDriftZPValue, drift.MethodMissing: collector.FeatureDriftMissingP}[f.Method]
					require.InDelta(t, *f.PValue, live(pv, fl), 1e-12, "%s: p-value of %s", f.Name, f.Method)
				}
				if f.DetectablePSI != nil {
					require.InDelta(t, *f.DetectablePSI, live(collector.FeatureDriftDetectable, fl), 1e-9, "%s: detectable PSI", f.Name)
				}
				require.InDelta(t, *f.Threshold, live(collector.FeatureDriftThreshold, ml), 1e-9, "%s: threshold of %s", f.Name, f.Method)
			}
			require.True(t, names[drift.ReconstructionError], "the reference has a multivariate drift feature")
			require.Equal(t, r.DriftShare, live(collector.DatasetDriftShare, nil))
			require.Equal(t, boolValue(r.DatasetDrifted), live(collector.DatasetDrifted, nil))
		})
	}
}

// The same batch sent to the sidecar and given to `exporter drift` breaks
// the reference's constraints alike: per feature and reason, the sidecar's
// modelmon_feature_values_invalid_total is the report's violations. A NaN
// ("NaN" as text) is a "nan" in both, not a "missing" offline; "NA" and
// "null" in JSON are strings in both ("type" for a number, a category).
func TestDriftViolationsAgree(t *testing.T) {
	ref := agreeReference(t, 3000)
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.Drift = driftOptions(ref) })
	push, jsonl := agreeBatch(t, "m", 600, 0.3, 61)
	pushRecordsRaw(t, e, strings.Split(strings.TrimSpace(push), "\n")...)
	cur := filepath.Join(t.TempDir(), "batch.jsonl")
	require.NoError(t, os.WriteFile(cur, []byte(jsonl), 0o644))
	c := driftcli.DriftCommand{Reference: ref, Current: cur, MinSamples: 50, Build: driftcli.BuildFlags{Prediction: "score"}}
	r, err := c.Report(driftcli.Env{})
	require.NoError(t, err)
	requireViolationsAgree(t, e, "m", r, nil)
	a, b := r.Features[0], r.Features[1]
	require.Equal(t, []string{"a", "b"}, []string{a.Name, b.Name})
	require.Positive(t, a.Violations["nan"], `"NaN" as text`)
	require.Positive(t, a.Violations["inf"], `"Infinity" as text`)
	require.Positive(t, a.Violations["missing"], "null and absent")
	require.Positive(t, b.Violations["type"], `"NA" in JSON`)
	require.Positive(t, b.Violations["inf"], "bare -Infinity")
	for _, f := range r.Features {
		switch f.Name {
		case "city":
			require.Positive(t, f.Violations["nan"], "bare NaN for a categorical feature")
		case "plan":
			require.Positive(t, f.Violations["inf"], "bare -Infinity for a categorical feature")
			require.Positive(t, f.Violations["unseen_category"], `"NaN" as text`)
		}
	}
	i := slices.IndexFunc(r.Features, func(f driftcli.FeatureResult) bool { return f.Prediction })
	require.GreaterOrEqual(t, i, 0)
	score := r.Features[i]
	require.Equal(t, "score", score.Name)
	require.Positive(t, score.Violations["out_of_range"], "a prediction of 2")
	require.Positive(t, score.Violations["missing"], "a prediction of null")
	require.Positive(t, score.Violations["nan"], "a prediction of NaN")
	require.Zero(t, metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": "m", "feature": PredictionColumn, "reason": "out_of_range"}),
		"the prediction goes by one name")
	// The reconstruction error of a record far from the reference (a of
	// 1e6) is out of its range; a record without a nor b has none, and
	// no missing one.
	i = slices.IndexFunc(r.Features, func(f driftcli.FeatureResult) bool { return f.Name == drift.ReconstructionError })
	require.GreaterOrEqual(t, i, 0)
	rerr := r.Features[i]
	require.Positive(t, rerr.Violations["out_of_range"])
	require.Zero(t, rerr.Violations["missing"])
	require.Less(t, rerr.N, int64(600), "records without a or b have no error")
}

// requireViolationsAgree checks that model's invalid-value counters in the
// sidecar are, feature by feature and reason by reason, the violations of
// the report r, for the features named in only (all when nil), the
// reconstruction error's included. The prediction's go by the profile's
// name for it, in both.
func requireViolationsAgree(t *testing.T, e *Exporter, model string, r *driftcli.Report, only []string) {
	t.Helper()
	checked := 0
	for _, f := range r.Features {
		if only != nil && !slices.Contains(only, f.Name) {
			continue
		}
		checked++
		for _, v := range drift.Violations() {
			live := metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": model, "feature": f.Name, "reason": v.String()})
			require.Equal(t, float64(f.Violations[v.String()]), live, "%s: %s", f.Name, v)
		}
	}
	require.Positive(t, checked)
}

// A CSV request (MLflow's text/csv) and `exporter drift` on the same CSV
// read it alike: pandas' markers of a missing value (NA, null, None, NaN,
// #N/A, …) are missing values in both, NAN (not one of them) a NaN in a
// numeric column, other text a string, and a number in a categorical
// column ("Inf", "007") its text; values, missing values and violations
// agree, feature by feature.
func TestDriftCSVAgreesWithOffline(t *testing.T) {
	ref := agreeReference(t, 3000)
	var rows []string
	rng := rand.New(rand.NewPCG(71, 72))
	// Each odd value goes into every column: their number is prime to 4.
	odd := []string{"NA", "null", "None", "NaN", "", "#N/A", "<NA>", "N/A", "nan", "NULL", "n.a.", "__other__", "NAN", "Inf", "-Infinity", "007", "7"}
	require.Equal(t, 1, len(odd)%2)
	for i := range 400 {
		a := rng.NormFloat64()
		fields := []string{fmt.Sprintf("%.4f", a), fmt.Sprintf("%.4f", 2*a+0.5*rng.NormFloat64()), agreeCity(rng), []string{"basic", "pro", "pro"}[rng.IntN(3)]}
		if i%3 == 0 {
			fields[i%4] = odd[(i/3)%len(odd)]
		}
		rows = append(rows, strings.Join(fields, ","))
	}
	e := startExporter(t, csvUpstream(t).URL, func(o *Options) { o.Drift = driftOptions(ref) })
	const header = "a,b,city,plan\n"
	for i := 0; i < len(rows); i += 50 {
		st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/invocations", header+strings.Join(rows[i:i+50], "\n")+"\n",
			"Content-Type", "text/csv", "X-Model-Name", "m")
		require.Equal(t, 200, st, body)
	}
	waitIdle(t, e)
	require.Equal(t, float64(len(rows)), metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "m"}))

	cur := filepath.Join(t.TempDir(), "batch.csv")
	require.NoError(t, os.WriteFile(cur, []byte(header+strings.Join(rows, "\n")+"\n"), 0o644))
	c := driftcli.DriftCommand{Reference: ref, Current: cur, MinSamples: 50, Build: driftcli.BuildFlags{Prediction: "score"}}
	r, err := c.Report(driftcli.Env{})
	require.NoError(t, err)
	inputs := []string{"a", "b", "city", "plan"}
	for _, f := range r.Features {
		if !slices.Contains(inputs, f.Name) {
			continue
		}
		l := map[string]string{"model": "m", "feature": f.Name, "window": "1h"}
		require.Equal(t, float64(f.N), metricValue(t, e, collector.FeatureDriftWindowValues, l), "%s: values", f.Name)
		require.InDelta(t, f.Scores["missing"], metricValue(t, e, collector.FeatureDriftMissingDelta, l), 1e-12, "%s: missing rate", f.Name)
	}
	requireViolationsAgree(t, e, "m", r, append(inputs, drift.ReconstructionError))
	a, city := r.Features[0], r.Features[2]
	require.Equal(t, "a", a.Name)
	require.Positive(t, a.Violations["missing"], "pandas' markers")
	require.Positive(t, a.Violations["nan"], "NAN")
	require.Positive(t, a.Violations["inf"], "Inf")
	require.Positive(t, a.Violations["type"], "n.a.")
	require.Equal(t, "city", city.Name)
	require.Zero(t, city.Violations["nan"]+city.Violations["inf"], "NAN and Inf are categories there")
	require.Positive(t, city.Violations["unseen_category"])
}

// csvUpstream is a model server that answers a CSV request with one score
// per row.
func csvUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := strings.Count(strings.TrimSpace(string(body)), "\n") // rows after the header
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"predictions": [%s]}`, strings.TrimSuffix(strings.Repeat("0.5,", n), ","))
	}))
	t.Cleanup(up.Close)
	return up
}

// A categorical feature whose categories look like numbers ("007", zip
// codes) gets them as categories from a CSV request, as from JSON strings
// and as `exporter drift` reads the column: not the number 7, an unseen
// category. A reference the sidecar learns from CSV traffic keeps them so
// too.
func TestDriftCSVCategoricalNumbers(t *testing.T) {
	zips := []string{"007", "010", "020", "00A"}
	rng := rand.New(rand.NewPCG(81, 82))
	var train, batch strings.Builder
	train.WriteString("amount,zip\n")
	batch.WriteString("amount,zip\n")
	for i := range 1500 {
		row := fmt.Sprintf("%.3f,%s\n", 100+20*rng.NormFloat64(), zips[rng.IntN(len(zips))])
		train.WriteString(row)
		if i < 300 {
			batch.WriteString(row)
		}
	}
	dir := t.TempDir()
	ref, cur := filepath.Join(dir, "train.csv"), filepath.Join(dir, "batch.csv")
	require.NoError(t, os.WriteFile(ref, []byte(train.String()), 0o644))
	require.NoError(t, os.WriteFile(cur, []byte(batch.String()), 0o644))
	up := csvUpstream(t)
	post := func(e *Exporter, model string) {
		st, body := do(t, "POST", "http://"+e.ProxyAddr()+"/invocations", batch.String(), "Content-Type", "text/csv", "X-Model-Name", model)
		require.Equal(t, 200, st, body)
		waitIdle(t, e)
	}

	opts := driftOptions(ref)
	opts.PredictionColumn = ""
	e := startExporter(t, up.URL, func(o *Options) { o.Drift = opts })
	post(e, "m")
	c := driftcli.DriftCommand{Reference: ref, Current: cur, MinSamples: 50}
	r, err := c.Report(driftcli.Env{})
	require.NoError(t, err)
	zip := r.Features[1]
	require.Equal(t, "zip", zip.Name)
	require.Empty(t, zip.Violations)
	l := map[string]string{"model": "m", "feature": "zip", "window": "1h"}
	require.Equal(t, float64(zip.N), metricValue(t, e, collector.FeatureDriftWindowValues, l))
	require.InDelta(t, zip.Scores["psi"], metricValue(t, e, collector.FeatureDriftPSI, l), 1e-9)
	require.Positive(t, metricValue(t, e, collector.FeatureBinTotal, map[string]string{"model": "m", "feature": "zip", "bin": "007"}))
	requireViolationsAgree(t, e, "m", r, []string{"zip"})

	// Learned from the same rows, the reference has the category "007".
	learn := driftOptions("")
	learn.LearnSamples = 300
	e = startExporter(t, up.URL, func(o *Options) { o.Drift = learn })
	post(e, "m")
	require.Equal(t, 1.0, metricValue(t, e, collector.DriftReferenceInfo, map[string]string{"model": "m", "source": "learned"}))
	require.Positive(t, metricValue(t, e, collector.FeatureReferenceRatio, map[string]string{"model": "m", "feature": "zip", "bin": "007"}))
	post(e, "m")
	require.Zero(t, metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": "m", "feature": "zip", "reason": "unseen_category"}))
	require.Equal(t, 300.0, metricValue(t, e, collector.FeatureDriftWindowValues, l))
}

// NaN and ±Inf pushed to the sidecar (bare, as Python's json.dumps writes
// them) and the same values in a Parquet file given to `exporter drift`
// are "nan" and "inf" violations in both, and a null a missing value:
// values, missing values and violations agree, feature by feature.
func TestDriftParquetAgreesWithOffline(t *testing.T) {
	type row struct {
		A     *float64 `parquet:"a,optional"`
		B     *float64 `parquet:"b,optional"`
		City  string   `parquet:"city"`
		Plan  string   `parquet:"plan"`
		Score float64  `parquet:"score"`
	}
	ref := agreeReference(t, 3000)
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.Drift = driftOptions(ref) })
	rng := rand.New(rand.NewPCG(91, 92))
	var rows []row
	var push []string
	for i := range 400 {
		a := rng.NormFloat64()
		b := 2*a + 0.5*rng.NormFloat64()
		r := row{A: &a, B: &b, City: agreeCity(rng), Plan: []string{"basic", "pro", "pro"}[rng.IntN(3)], Score: rng.Float64()}
		aText := fmt.Sprint(a)
		switch i % 7 {
		case 1:
			r.A, aText = ptr(math.NaN()), "NaN"
		case 2:
			r.A, aText = ptr(math.Inf(1)), "Infinity"
		case 3:
			r.A, aText = ptr(math.Inf(-1)), "-Infinity"
		case 4:
			r.A, aText = nil, "null"
		}
		rows = append(rows, r)
		push = append(push, fmt.Sprintf(`{"model":"m","features":{"a":%s,"b":%v,"city":%q,"plan":%q},"prediction":%v}`, aText, b, r.City, r.Plan, r.Score))
	}
	pushRecordsRaw(t, e, push...)
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[row](&buf)
	_, err := w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	cur := filepath.Join(t.TempDir(), "batch.parquet")
	require.NoError(t, os.WriteFile(cur, buf.Bytes(), 0o644))

	c := driftcli.DriftCommand{Reference: ref, Current: cur, MinSamples: 50, Build: driftcli.BuildFlags{Prediction: "score"}}
	r, err := c.Report(driftcli.Env{})
	require.NoError(t, err)
	for _, f := range r.Features {
		l := map[string]string{"model": "m", "feature": f.Name, "window": "1h"}
		require.Equal(t, float64(f.N), metricValue(t, e, collector.FeatureDriftWindowValues, l), "%s: values", f.Name)
		require.InDelta(t, f.Scores["missing"], metricValue(t, e, collector.FeatureDriftMissingDelta, l), 1e-12, "%s: missing rate", f.Name)
	}
	requireViolationsAgree(t, e, "m", r, nil)
	a := r.Features[0]
	require.Equal(t, "a", a.Name)
	require.Equal(t, map[string]uint64{"nan": 57, "inf": 114, "missing": 57}, a.Violations)
}

func ptr[T any](v T) *T { return &v }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// The recording rules of `exporter rules` compute, from the bin counters and
// reference shares, the PSI the sidecar exposes for the same values, and
// sum two replicas exactly: one sidecar fed the whole batch and two fed a
// half each give, under a real Prometheus, the sidecar's own PSI and
// `exporter drift`'s, feature by feature, with missing values, unseen,
// rare and odd categories and out-of-range values among them.
func TestDriftRulesAgreeWithSidecar(t *testing.T) {
	prometheustest.Binary(t)
	ref := agreeReference(t, 3000)
	profile, _, err := driftref.Load(ref, "score")
	require.NoError(t, err)
	up := modelServer(t)
	start := func() *Exporter { return startExporter(t, up.URL, func(o *Options) { o.Drift = driftOptions(ref) }) }
	whole, a, b := start(), start(), start()
	push, jsonl := agreeBatch(t, "whole", 800, 0.3, 31)
	lines := strings.Split(strings.TrimSpace(push), "\n")
	pushRecordsRaw(t, whole, lines...)
	var halves [2][]string
	for i, l := range lines {
		halves[i%2] = append(halves[i%2], strings.Replace(l, `"model":"whole"`, `"model":"fleet"`, 1))
	}
	pushRecordsRaw(t, a, halves[0]...)
	pushRecordsRaw(t, b, halves[1]...)

	cur := filepath.Join(t.TempDir(), "batch.jsonl")
	require.NoError(t, os.WriteFile(cur, []byte(jsonl), 0o644))
	c := driftcli.DriftCommand{Reference: ref, Current: cur, MinSamples: 50, Build: driftcli.BuildFlags{Prediction: "score"}}
	r, err := c.Report(driftcli.Env{})
	require.NoError(t, err)

	rules, err := driftcli.Rules(profile, driftcli.RulesOptions{Windows: []time.Duration{time.Hour}})
	require.NoError(t, err)
	rulesFile := filepath.Join(t.TempDir(), "drift.rules.yml")
	require.NoError(t, os.WriteFile(rulesFile, rules, 0o644))
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{whole.WebAddr(), a.WebAddr(), b.WebAddr()}, RuleFiles: []string{rulesFile}})

	for _, f := range r.Features {
		want := f.Scores["psi"]
		live := metricValue(t, whole, collector.FeatureDriftPSI, map[string]string{"model": "whole", "feature": f.Name, "window": "1h"})
		require.InDelta(t, want, live, 1e-9*math.Max(1, want), "%s: sidecar", f.Name)
		for _, m := range []string{"whole", "fleet"} {
			expr := fmt.Sprintf(`modelmon:feature_drift_psi:total{model=%q,feature=%q}`, m, f.Name)
			var got float64
			require.Eventually(t, func() bool {
				got, err = prom.QueryScalar(expr)
				return err == nil && math.Abs(got-want) <= 1e-9*math.Max(1, want)
			}, 60*time.Second, 250*time.Millisecond, "%s: want %v, got %v (err %v)", expr, want, got, err)
		}
	}
}

// limits.max_features caps the feature label values of traffic, not the
// features of a model's reference: a record's features past the cap are
// still counted into the drift windows of the reference's features (whose
// metrics the profile bounds), as `exporter drift` counts every column,
// whether or not the reference had missing values.
func TestDriftFeaturesPastTheCap(t *testing.T) {
	ref := agreeReference(t, 3000)
	data, err := os.ReadFile(ref)
	require.NoError(t, err)
	// city may be missing in the reference: a missing city breaks no constraint.
	rows := strings.Split(string(data), "\n")
	fields := strings.Split(rows[5], ",")
	fields[2] = ""
	rows[5] = strings.Join(fields, ",")
	require.NoError(t, os.WriteFile(ref, []byte(strings.Join(rows, "\n")), 0o644))
	e := startWithConfig(t, modelServer(t).URL, "limits:\n  max_features: 3\n", func(o *Options) { o.Drift = driftOptions(ref) })
	push, jsonl := agreeBatch(t, "m", 200, 0, 41)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(push), "\n") {
		// Features the reference lacks, first in the record, take the slots.
		lines = append(lines, strings.Replace(l, `"features":{`, `"features":{"x1":1,"x2":2,"x3":3,`, 1))
	}
	pushRecordsRaw(t, e, lines...)
	cur := filepath.Join(t.TempDir(), "batch.jsonl")
	require.NoError(t, os.WriteFile(cur, []byte(jsonl), 0o644))
	c := driftcli.DriftCommand{Reference: ref, Current: cur, MinSamples: 50, Build: driftcli.BuildFlags{Prediction: "score"}}
	r, err := c.Report(driftcli.Env{})
	require.NoError(t, err)
	for _, f := range r.Features {
		l := map[string]string{"model": "m", "feature": f.Name, "window": "1h"}
		require.Equal(t, float64(f.N), metricValue(t, e, collector.FeatureDriftWindowValues, l), f.Name)
		require.InDelta(t, f.Scores["missing"], metricValue(t, e, collector.FeatureDriftMissingDelta, l), 1e-12, f.Name)
	}
}

// A boolean column of training data in CSV, as pandas writes it (True,
// False), is the same feature as the booleans of the model's JSON traffic:
// the sidecar, and `exporter drift` on the same batch as CSV or JSON Lines,
// find no drift in it.
func TestDriftBooleanColumnCSV(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	var ref, cur strings.Builder
	ref.WriteString("amount,new_customer\n")
	cur.WriteString("amount,new_customer\n")
	var push, jsonl []string
	for i := range 3000 {
		amount, isNew := 100+20*rng.NormFloat64(), rng.IntN(3) == 0
		fmt.Fprintf(&ref, "%.3f,%s\n", amount, map[bool]string{true: "True", false: "False"}[isNew])
		if i < 500 {
			fmt.Fprintf(&cur, "%.3f,%s\n", amount, map[bool]string{true: "True", false: "False"}[isNew])
			push = append(push, fmt.Sprintf(`{"model":"m","features":{"amount":%.3f,"new_customer":%t}}`, amount, isNew))
			jsonl = append(jsonl, fmt.Sprintf(`{"amount":%.3f,"new_customer":%t}`, amount, isNew))
		}
	}
	dir := t.TempDir()
	refPath, csvPath, jsonlPath := filepath.Join(dir, "train.csv"), filepath.Join(dir, "batch.csv"), filepath.Join(dir, "batch.jsonl")
	require.NoError(t, os.WriteFile(refPath, []byte(ref.String()), 0o644))
	require.NoError(t, os.WriteFile(csvPath, []byte(cur.String()), 0o644))
	require.NoError(t, os.WriteFile(jsonlPath, []byte(strings.Join(jsonl, "\n")), 0o644))

	opts := driftOptions(refPath)
	opts.PredictionColumn = ""
	e := startExporter(t, modelServer(t).URL, func(o *Options) { o.Drift = opts })
	pushRecordsRaw(t, e, push...)
	l := map[string]string{"model": "m", "feature": "new_customer", "window": "1h"}
	require.Equal(t, 500.0, metricValue(t, e, collector.FeatureDriftWindowValues, l))
	require.Zero(t, metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": "m", "feature": "new_customer", "reason": "unseen_category"}))
	require.Less(t, metricValue(t, e, collector.FeatureDriftPSI, l), 0.01)
	for _, path := range []string{csvPath, jsonlPath} {
		c := driftcli.DriftCommand{Reference: refPath, Current: path, MinSamples: 50}
		r, err := c.Report(driftcli.Env{})
		require.NoError(t, err)
		for _, f := range r.Features {
			require.False(t, f.Drifted, "%s: %s: %s", path, f.Name, f.Reason)
			require.InDelta(t, f.Scores["psi"], metricValue(t, e, collector.FeatureDriftPSI, map[string]string{"model": "m", "feature": f.Name, "window": "1h"}), 1e-9, "%s: %s", path, f.Name)
		}
	}
}

// A classifier's predictions given as probability vectors, class indexes
// and names, pushed to the sidecar and given to `exporter drift` with
// --config.file and --model of a model with models[].classes, are read
// alike: the same classes in the same bins, the same scores and decision,
// and the predictions whose positions the classes don't name (a vector
// of two probabilities for three classes, an index past them, a NaN)
// left out of both, the sidecar's unnamed_class the report's. Without
// --model the report says the prediction, a vector there, can't be read.
func TestDriftClassesAgreeWithOffline(t *testing.T) {
	dir := t.TempDir()
	classes := []string{"cat", "dog", "bird"}
	rng := rand.New(rand.NewPCG(31, 32))
	var train strings.Builder
	train.WriteString("amount,label\n")
	for range 800 {
		fmt.Fprintf(&train, "%.3f,%s\n", 100+20*rng.NormFloat64(), []string{"cat", "cat", "dog", "bird"}[rng.IntN(4)])
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "train.csv"), []byte(train.String()), 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: m
    classes: [cat, dog, bird]
    drift: {reference: train.csv, prediction_column: label}
`), 0o644))
	var push, jsonl []string
	for i := range 400 {
		// Shifted towards dog: cat 40 %, dog 40 %, bird 20 %.
		k := []int{0, 0, 1, 1, 2}[rng.IntN(5)]
		var pred string
		switch i % 10 {
		case 0:
			pred = strconv.Itoa(k) // an index
		case 1:
			pred = strconv.Quote(classes[k]) // a name
		case 2:
			pred = []string{"[0.5,0.5]", "7", "NaN", "null"}[i/10%4] // unnamed, or none
		default:
			p := []float64{0.1, 0.1, 0.1}
			p[k] = 0.8
			pred = fmt.Sprintf("[%g,%g,%g]", p[0], p[1], p[2])
		}
		amount := 100 + 20*rng.NormFloat64()
		push = append(push, fmt.Sprintf(`{"model":"m","features":{"amount":%.3f},"prediction":%s}`, amount, pred))
		jsonl = append(jsonl, fmt.Sprintf(`{"amount":%.3f,"label":%s}`, amount, pred))
	}
	cur := filepath.Join(dir, "batch.jsonl")
	require.NoError(t, os.WriteFile(cur, []byte(strings.Join(jsonl, "\n")+"\n"), 0o644))

	e := startExporter(t, modelServer(t).URL, func(o *Options) {
		o.ConfigFile = cfg
		o.Drift = driftOptions("")
	})
	pushRecordsRaw(t, e, push...)
	c := driftcli.DriftCommand{Config: cfg, Model: "m", Current: cur, MinSamples: 50}
	r, err := c.Report(driftcli.Env{})
	require.NoError(t, err)
	i := slices.IndexFunc(r.Features, func(f driftcli.FeatureResult) bool { return f.Prediction })
	require.GreaterOrEqual(t, i, 0)
	label := r.Features[i]
	require.Equal(t, "label", label.Name)
	require.True(t, label.Ready, label.Reason)
	l := map[string]string{"model": "m", "feature": "label", "window": "1h"}
	require.Equal(t, float64(label.N), metricValue(t, e, collector.FeatureDriftWindowValues, l))
	require.InDelta(t, label.Scores["psi"], metricValue(t, e, collector.FeatureDriftPSI, l), 1e-9)
	require.Equal(t, boolValue(label.Drifted), metricValue(t, e, collector.FeatureDrifted, map[string]string{"model": "m", "feature": "label", "window": "1h", "method": string(label.Method)}))
	require.Zero(t, metricValue(t, e, collector.FeatureBinTotal, map[string]string{"model": "m", "feature": "label", "bin": drift.OtherLabel}))
	require.Equal(t, int64(10), label.Missing, "null")
	require.Equal(t, 30.0, metricValue(t, e, collector.FeatureValuesInvalid, map[string]string{"model": "m", "feature": "label", "reason": collector.InvalidUnnamedClass}))
	require.Equal(t, uint64(30), label.Violations[driftcli.ViolationUnnamedClass])
	requireViolationsAgree(t, e, "m", r, []string{"label"})
	require.Empty(t, slices.DeleteFunc(slices.Clone(r.Warnings), func(w string) bool { return !strings.Contains(w, "label.") }), "the vector's columns are the prediction")

	// Without the model's classes: not read by position, and said.
	c = driftcli.DriftCommand{Reference: filepath.Join(dir, "train.csv"), Current: cur, MinSamples: 50, Build: driftcli.BuildFlags{Prediction: "label"}}
	r, err = c.Report(driftcli.Env{})
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(r.Warnings, func(w string) bool {
		return strings.Contains(w, `the prediction "label" is given as a vector (label.0, label.1, …)`) && strings.Contains(w, "models[].classes")
	}), "%q", r.Warnings)
}
