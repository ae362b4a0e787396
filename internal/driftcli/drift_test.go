package driftcli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
)

// The report of each pair of inputs matches its golden file. The shifted data
// move age by ten years and the mix of cities: two of the four features drift,
// which is the dataset's threshold share; the prediction drifts with age but
// does not count.
func TestDriftGolden(t *testing.T) {
	// The same data as Parquet give the same reports as CSV.
	dir := t.TempDir()
	for _, name := range []string{"reference", "current-shifted"} {
		data, err := os.ReadFile("testdata/" + name + ".csv")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".parquet"), referenceParquet(t, string(data)), 0o644))
	}
	for _, tc := range []struct {
		name, golden string
		cmd          DriftCommand
	}{
		{"raw parquet, shifted, json", "drift-shifted.golden.json",
			DriftCommand{Reference: filepath.Join(dir, "reference.parquet"), Current: filepath.Join(dir, "current-shifted.parquet"), Output: "json"}},
		{"raw csv, shifted, json", "drift-shifted.golden.json",
			DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv", Output: "json"}},
		{"raw csv, shifted, text", "drift-shifted.golden.txt",
			DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv"}},
		{"profile, clean jsonl, json", "drift-clean.golden.json",
			DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.jsonl", Output: "json"}},
		{"profile, clean jsonl, text", "drift-clean.golden.txt",
			DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.jsonl", Output: "text"}},
		{"raw jsonl, other columns, json", "drift-columns.golden.json",
			DriftCommand{Reference: "testdata/reference.jsonl", Current: "testdata/current-columns.csv", Output: "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			c.Build.Prediction = "score"
			res := run(t, &c, "")
			require.Equal(t, ExitOK, res.code, res.stderr)
			require.Empty(t, res.stderr)
			// The report names its inputs: the Parquet ones stand for the CSV.
			out := strings.NewReplacer(filepath.Join(dir, "reference.parquet"), "testdata/reference.csv",
				filepath.Join(dir, "current-shifted.parquet"), "testdata/current-shifted.csv").Replace(res.stdout)
			if strings.HasSuffix(tc.golden, ".json") {
				goldenJSON(t, tc.golden, []byte(out))
			} else {
				golden(t, tc.golden, []byte(res.stdout))
			}
		})
	}
}

// The JSON report has the fields the issue fixed, with p_value null for a
// distance, and the exact statistics only when both sides are raw data.
func TestDriftJSONShape(t *testing.T) {
	report := func(c DriftCommand) map[string]any {
		t.Helper()
		c.Output = "json"
		c.Build.Prediction = "score"
		res := run(t, &c, "")
		require.Equal(t, ExitOK, res.code, res.stderr)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &m))
		return m
	}
	m := report(DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv", Methods: []string{"age=psi", "city=jensenshannon"}})
	for _, k := range []string{"features", "drift_share", "dataset_drifted"} {
		require.Contains(t, m, k)
	}
	require.Equal(t, 0.5, m["drift_share"])
	require.Equal(t, true, m["dataset_drifted"])
	features := m["features"].([]any)
	require.Len(t, features, 5)
	byName := map[string]map[string]any{}
	for _, f := range features {
		f := f.(map[string]any)
		for _, k := range []string{"name", "type", "method", "score", "threshold", "p_value", "drifted", "scores"} {
			require.Contains(t, f, k, "feature %v", f["name"])
		}
		byName[f["name"].(string)] = f
	}
	age := byName["age"]
	require.Equal(t, "psi", age["method"])
	require.Nil(t, age["p_value"], "PSI has no p-value")
	require.Equal(t, age["score"], age["scores"].(map[string]any)["psi"])
	require.Contains(t, age["scores"], ScoreKSExact)
	require.Contains(t, age["scores"], ScoreWassersteinExact)
	require.Contains(t, age, "ks_exact_p_value")
	require.Equal(t, "jensenshannon", byName["city"]["method"])
	require.NotContains(t, byName["city"]["scores"], ScoreKSExact, "categorical")
	require.NotNil(t, byName["plan"]["p_value"], "z has a p-value")

	// A profile as the reference: no raw samples, no exact statistics.
	m = report(DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-shifted.csv"})
	for _, f := range m["features"].([]any) {
		f := f.(map[string]any)
		require.NotContains(t, f["scores"], ScoreKSExact)
		require.NotContains(t, f, "ks_exact_p_value")
	}
}

// The exact statistics of the raw samples are drift's KSExact and
// WassersteinExact (normed by the reference's std), and the binned ones are
// close to them.
func TestDriftExact(t *testing.T) {
	c := DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv", Build: BuildFlags{Prediction: "score"}}
	r, err := c.Report(Env{})
	require.NoError(t, err)
	read := func(path string) []float64 {
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		cols, err := drift.ReadCSV(path, f, drift.ReadOptions{Columns: []string{"age"}})
		require.NoError(t, err)
		return cols[0].Num
	}
	ref, cur := read("testdata/reference.csv"), read("testdata/current-shifted.csv")
	d, p := drift.KSExact(ref, cur)
	age := r.Features[0]
	require.Equal(t, "age", age.Name)
	require.Equal(t, d, age.Scores[ScoreKSExact])
	require.Equal(t, p, *age.KSExactPValue)
	require.LessOrEqual(t, age.Scores["ks"], d+1e-12, "the binned KS is at most the exact one")
	require.InDelta(t, d, age.Scores["ks"], 1.0/200)
	std := 11.767712437003196 // the golden profile's
	require.InDelta(t, drift.WassersteinExact(ref, cur)/std, age.Scores[ScoreWassersteinExact], 1e-12)
	require.InEpsilon(t, age.Scores[ScoreWassersteinExact], age.Scores["wasserstein"], 0.05)
}

// --fail-on-drift turns the dataset's drift into exit code 1; errors are 2.
func TestDriftExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  DriftCommand
		want int
	}{
		{"shifted, fail on drift", DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv", FailOnDrift: true}, ExitDrift},
		{"shifted jsonl against the profile, fail on drift", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-shifted.jsonl", FailOnDrift: true}, ExitDrift},
		{"shifted, report only", DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv"}, ExitOK},
		{"clean, fail on drift", DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-clean.csv", FailOnDrift: true}, ExitOK},
		{"clean against the profile, fail on drift", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", FailOnDrift: true}, ExitOK},
		{"clean, fixed thresholds", DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-clean.csv", FailOnDrift: true, FixedThresholds: true}, ExitOK},
		{"too few values to decide", DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv", FailOnDrift: true, MinSamples: 1000}, ExitOK},
		{"bad current", DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/ragged.csv", FailOnDrift: true}, ExitError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			c.Build.Prediction = "score"
			res := run(t, &c, "")
			require.Equal(t, tc.want, res.code, res.stderr)
			if tc.want != ExitError {
				require.Contains(t, res.stdout, "dataset: ")
			}
		})
	}
}

// A column the reference lacks is a warning; a reference feature the current
// data lack is not ready, and does not count in the dataset's verdict.
func TestDriftColumns(t *testing.T) {
	c := DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-columns.csv"}
	res := run(t, &c, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Contains(t, res.logs, `level=WARN msg="Column of the current data is not in the reference, ignored" file=testdata/current-columns.csv column=device`)
	require.Contains(t, res.logs, `level=WARN msg="Feature of the reference is missing from the current data, not scored" file=testdata/current-columns.csv feature=plan`)
	require.Contains(t, res.stdout, `plan                categorical  z          -        -          -        -       not ready: no column "plan" in testdata/current-columns.csv`)
	require.Contains(t, res.stdout, "dataset: drifted 0/3 features (share 0 < 0.5): no drift\n")

	r, err := c.Report(Env{})
	require.NoError(t, err)
	require.Equal(t, []string{
		`testdata/current-columns.csv: column "device" is not in the reference; ignored`,
		`testdata/current-columns.csv: no column "plan"; the feature is not ready`,
	}, r.Warnings)
	plan := r.Features[3]
	require.Equal(t, "plan", plan.Name)
	require.False(t, plan.Ready)
	require.Nil(t, plan.Score)
	require.Nil(t, plan.Threshold)
	require.Equal(t, 3, r.ReadyFeatures)
}

// Values that break the reference's constraints are counted per feature; a
// numeric feature's values that are not numbers count as missing, with a
// warning.
func TestDriftViolations(t *testing.T) {
	data := "age,income,city,plan,score\n"
	for i := range 200 {
		age := "30"
		switch i {
		case 0:
			age = "old"
		case 1:
			age = "120"
		case 2:
			age = ""
		}
		city := "paris"
		if i < 3 {
			city = "atlantis"
		}
		data += age + ",300," + city + ",free,0.5\n"
	}
	cur := filepath.Join(t.TempDir(), "current.csv")
	require.NoError(t, os.WriteFile(cur, []byte(data), 0o644))
	c := DriftCommand{Reference: "testdata/profile.golden.json", Current: cur}
	r, err := c.Report(Env{})
	require.NoError(t, err)
	age, city := r.Features[0], r.Features[2]
	require.Equal(t, map[string]uint64{"type": 1, "out_of_range": 1, "missing": 1}, age.Violations)
	require.Equal(t, int64(198), age.N)
	require.Equal(t, int64(2), age.Missing)
	require.Equal(t, map[string]uint64{"unseen_category": 3}, city.Violations)
	require.Contains(t, r.Warnings, cur+`: column "age": 1 values are not numbers; counted as missing`)
	require.NotContains(t, age.Scores, ScoreKSExact, "a profile has no raw samples")
}

// A numeric feature whose current values are text ("abc" for ages) is not
// "not enough data", as a small batch would be: its data broke, which the
// report says in the feature's row and the dataset's line, and which exits
// with ExitError after the report, with or without --fail-on-drift, as
// Evidently fails such a column. A few stray values beside enough numbers
// stay a warning (TestDriftViolations).
func TestDriftUnreadable(t *testing.T) {
	write := func(age func(i int) string) string {
		t.Helper()
		var b strings.Builder
		b.WriteString("age,income,city,plan,score\n")
		for i := range 200 {
			b.WriteString(age(i) + "," + []string{"300", "420", "510"}[i%3] + "," + []string{"paris", "oslo"}[i%2] + ",free,0.5\n")
		}
		path := filepath.Join(t.TempDir(), "current.csv")
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
		return path
	}
	all := write(func(int) string { return "abc" })
	for _, fail := range []bool{false, true} {
		res := run(t, &DriftCommand{Reference: "testdata/profile.golden.json", Current: all, FailOnDrift: fail}, "")
		require.Equal(t, ExitError, res.code, "fail on drift %v", fail)
		msg := `none of its 200 values is a number (such as "abc"), where the reference's are numbers`
		require.Equal(t, "exporter drift: "+all+`: column "age": `+msg+"\n", res.stderr)
		require.Contains(t, res.stdout, "ERROR   error: "+msg+"\n")
		require.Regexp(t, `\ndataset: drifted \d/3 features .*; error: the data of age broke\n$`, res.stdout)
	}

	c := DriftCommand{Reference: "testdata/profile.golden.json", Current: all, Output: OutputJSON}
	res := run(t, &c, "")
	require.Equal(t, ExitError, res.code)
	var r Report
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &r))
	age := r.Features[0]
	require.False(t, age.Ready)
	require.False(t, age.Drifted)
	require.Equal(t, map[string]uint64{"type": 200}, age.Violations)
	require.Equal(t, `none of its 200 values is a number (such as "abc"), where the reference's are numbers`, age.Error)
	require.Equal(t, []string{all + `: column "age": ` + age.Error}, r.Errors)
	require.Empty(t, r.Warnings, "the error, not also a warning")
	require.Equal(t, 3, r.ReadyFeatures, "the other features are decided")

	// Most values text, and too few numbers left: the same. (Text that
	// pandas does not read as missing: "n/a" would be a missing value.)
	most := write(func(i int) string {
		if i%4 == 0 {
			return "30"
		}
		return "unknown"
	})
	res = run(t, &DriftCommand{Reference: "testdata/profile.golden.json", Current: most}, "")
	require.Equal(t, ExitError, res.code)
	require.Equal(t, "exporter drift: "+most+`: column "age": 150 of its 200 values are not numbers (such as "unknown"), where the reference's are numbers; the 50 left are fewer than the 100 needed`+"\n", res.stderr)

	// A small batch of numbers is not ready, as before; enough numbers with
	// text beside them are decided, with a warning.
	for _, tc := range []struct {
		name    string
		minimum int64
		want    string
	}{
		{"small batch", 500, "not enough data: 150 values, want 500"},
		{"enough numbers", 10, "ks p="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(func(i int) string {
				if i%4 == 0 {
					return "abc"
				}
				return []string{"25", "35", "45", "55"}[i%4]
			})
			r, err := (&DriftCommand{Reference: "testdata/profile.golden.json", Current: path, MinSamples: tc.minimum}).Report(Env{})
			require.NoError(t, err)
			require.Empty(t, r.Errors)
			require.Empty(t, r.Features[0].Error)
			require.Contains(t, r.Features[0].Reason, tc.want)
			require.Contains(t, r.Warnings, path+`: column "age": 50 values are not numbers; counted as missing`)
		})
	}
}

// Categories that look like numbers keep their text: a current column of zip
// codes with leading zeros, all numbers, matches the reference's categories.
func TestDriftCategoriesLikeNumbers(t *testing.T) {
	dir := t.TempDir()
	var ref, cur strings.Builder
	ref.WriteString("zip,plan\n")
	cur.WriteString("zip,plan\n")
	for i := range 300 {
		zip := []string{"01000", "02000", "03000"}[i%3]
		ref.WriteString(zip + ",free\n")
		cur.WriteString(zip + ",free\n")
	}
	ref.WriteString("A1,free\n") // makes zip categorical in the reference
	refPath, curPath := filepath.Join(dir, "ref.csv"), filepath.Join(dir, "cur.csv")
	require.NoError(t, os.WriteFile(refPath, []byte(ref.String()), 0o644))
	require.NoError(t, os.WriteFile(curPath, []byte(cur.String()), 0o644))
	c := DriftCommand{Reference: refPath, Current: curPath, FailOnDrift: true}
	r, err := c.Report(Env{})
	require.NoError(t, err)
	zip := r.Features[0]
	require.Equal(t, drift.Categorical, zip.Type)
	require.Empty(t, zip.Violations, "no unseen category")
	require.False(t, zip.Drifted, zip.Reason)
}

// Current data can come from stdin.
func TestDriftStdin(t *testing.T) {
	data, err := os.ReadFile("testdata/current-shifted.jsonl")
	require.NoError(t, err)
	c := DriftCommand{Reference: "testdata/profile.golden.json", Current: "-", Format: "jsonl", FailOnDrift: true}
	res := run(t, &c, string(data))
	require.Equal(t, ExitDrift, res.code, res.stderr)
	require.Contains(t, res.stdout, "dataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n")
}

func TestDriftErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  DriftCommand
		want string
	}{
		{"ragged current", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/ragged.csv"},
			`testdata/ragged.csv:3: column "score": ragged row (4 fields, want 5)`},
		{"ragged reference", DriftCommand{Reference: "testdata/ragged.csv", Current: "testdata/current-clean.csv"},
			`testdata/ragged.csv:3: column "score": ragged row (4 fields, want 5)`},
		{"bad jsonl current", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/bad.jsonl"},
			`testdata/bad.jsonl:2:21: invalid character 'o' looking for beginning of value`},
		{"bad profile", DriftCommand{Reference: "testdata/bad-profile.json", Current: "testdata/current-clean.csv"},
			`testdata/bad-profile.json: profile version 2 is not supported (want 1)`},
		{"unknown method", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Methods: []string{"age=energy"}},
			`--method="age=energy": unknown method "energy" (want one of psi, jensenshannon, hellinger, ks, wasserstein, chisquare, z, missing)`},
		{"method syntax", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Methods: []string{"ks"}},
			`--method="ks": want FEATURE=METHOD`},
		{"method twice", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Methods: []string{"age=ks", "age=psi"}},
			`--method="age=psi": feature "age" has a method already`},
		{"method of unknown feature", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Methods: []string{"height=ks"}},
			`--method: testdata/profile.golden.json has no feature "height"`},
		{"method that does not apply", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Methods: []string{"plan=ks"}},
			`invalid options: feature "plan": method "ks" does not apply to a categorical feature with 2 distinct values`},
		{"bad alpha", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Alpha: 2},
			`invalid options: alpha must be in (0, 1), got 2`},
		{"unknown correction", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Correction: "holm"},
			`--correction: unknown correction "holm": want bonferroni, fdr or none`},
		{"bad correction alpha", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", CorrectionAlpha: 1},
			`--correction-alpha must be in (0, 1), got 1`},
		{"negative correction alpha", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", CorrectionAlpha: -0.05},
			`--correction-alpha must be in (0, 1), got -0.05`},
		{"model without configuration", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Model: "fraud"},
			`--model needs --config.file`},
		{"model not configured", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Config: "testdata/drift-config.yml", Model: "churn"},
			`--model: testdata/drift-config.yml configures no model "churn"`},
		{"bad model correction", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Config: "testdata/bad-drift-config.yml", Model: "fraud"},
			`testdata/bad-drift-config.yml:4: models[0].drift.correction: unknown correction "holm" (want one of bonferroni, fdr, none)`},
		{"no reference", DriftCommand{Current: "testdata/current-clean.csv"},
			`--reference is required, or --config.file and --model of a model with models[].drift.reference`},
		{"no reference, no model", DriftCommand{Current: "testdata/current-clean.csv", Config: "testdata/drift-config.yml"},
			`--reference is required, or --config.file and --model of a model with models[].drift.reference`},
		{"no reference, none of the model's", DriftCommand{Current: "testdata/current-clean.csv", Config: "testdata/drift-config.yml", Model: "fraud"},
			`--reference is required: model "fraud" of testdata/drift-config.yml has no models[].drift.reference`},
		{"the model's reference missing", DriftCommand{Current: "testdata/current-clean.csv", Config: "testdata/missing-reference-config.yml", Model: "fraud"},
			`--config.file="testdata/missing-reference-config.yml": model "fraud": couldn't load models[].drift.reference="testdata/missing.csv": open testdata/missing.csv: no such file or directory`},
		{"no current", DriftCommand{Reference: "testdata/profile.golden.json"},
			`--current is required`},
		{"bad output", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Output: "yaml"},
			`unknown output format "yaml" (want text or json)`},
		{"both stdin", DriftCommand{Reference: "-", Current: "-", Format: "csv"},
			`--reference and --current can't both be stdin (-)`},
		{"prediction the profile lacks", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Build: BuildFlags{Prediction: "label"}},
			`--prediction="label": the profile has no such feature`},
		{"prediction other than the profile's", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Build: BuildFlags{Prediction: "age"}},
			`--prediction="age": the profile's prediction is "score"`},
		{"unknown extension", DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current.avro"},
			`testdata/current.avro: unknown file type (want .csv, .jsonl, .ndjson or .parquet, or set --format)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			res := run(t, &c, "")
			require.Equal(t, ExitError, res.code)
			require.Empty(t, res.stdout)
			require.Equal(t, "exporter drift: "+tc.want+"\n", res.stderr)
		})
	}
}

// With --config.file, the model's decision takes the correction and level
// the sidecar gives the model: --model's models[].drift, key by key, else
// drift:'s. --correction and --correction-alpha, given, win over them.
// age moved 1.5 years (p 0.033): it makes the model drift uncorrected at
// 0.05, not with Bonferroni's 0.0125.
func TestDriftModelCorrectionFromConfig(t *testing.T) {
	slight := shiftedClean(t, 1.5, 0)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("drift: {correction: bonferroni, correction_alpha: 0.04}\n"+
		"models:\n"+
		"  - name: wide\n"+
		"    drift: {correction: none}\n"+
		"  - name: narrow\n"+
		"    drift: {correction: fdr, correction_alpha: 0.01}\n"), 0o644))
	for _, tc := range []struct {
		name       string
		cmd        DriftCommand
		correction drift.Correction
		alpha      float64
		code       int
	}{
		{"no configuration", DriftCommand{}, "bonferroni", 0.05, ExitOK},
		{"drift:'s", DriftCommand{Config: cfg}, "bonferroni", 0.04, ExitOK},
		{"the model's correction, drift:'s level", DriftCommand{Config: cfg, Model: "wide"}, "none", 0.04, ExitDrift},
		{"the model's both", DriftCommand{Config: cfg, Model: "narrow"}, "fdr", 0.01, ExitOK},
		{"--correction wins", DriftCommand{Config: cfg, Model: "wide", Correction: "bonferroni"}, "bonferroni", 0.04, ExitOK},
		{"--correction-alpha wins", DriftCommand{Config: cfg, Model: "narrow", CorrectionAlpha: 0.2}, "fdr", 0.2, ExitDrift},
		{"both flags win", DriftCommand{Config: cfg, Model: "wide", Correction: "fdr", CorrectionAlpha: 0.01}, "fdr", 0.01, ExitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			c.Reference, c.Current, c.Build.Prediction, c.Output, c.FailOnModelDrift = "testdata/reference.csv", slight, "score", OutputJSON, true
			res := run(t, &c, "")
			require.Equal(t, tc.code, res.code, res.stderr)
			var r Report
			require.NoError(t, json.Unmarshal([]byte(res.stdout), &r))
			require.Equal(t, tc.correction, r.Model.Correction)
			require.Equal(t, tc.alpha, r.Model.Alpha)
		})
	}
}

// With --config.file and --model, a model with models[].drift.reference is
// checked against it without --reference: training data, relative to the
// configuration file, profiled as the sidecar profiles it with its
// prediction_column (and, raw data on both sides, with the exact scores);
// a profile as it is. --reference and --prediction, given, win.
func TestDriftModelReferenceFromConfig(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/reference.csv")
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "ref"), 0o755))
	train := filepath.Join(dir, "ref", "train.csv")
	require.NoError(t, os.WriteFile(train, data, 0o644))
	profile, err := filepath.Abs("testdata/profile.golden.json")
	require.NoError(t, err)
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n"+
		"  - name: fraud\n"+
		"    drift: {reference: ref/train.csv, prediction_column: score}\n"+
		"  - name: churn\n"+
		"    drift: {reference: "+profile+"}\n"), 0o644))
	current := shiftedClean(t, 1.5, 0)
	report := func(c DriftCommand) Report {
		t.Helper()
		c.Current, c.Output = current, OutputJSON
		res := run(t, &c, "")
		require.Equal(t, ExitOK, res.code, res.stderr)
		var r Report
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &r))
		return r
	}
	prediction := func(r Report) []string {
		var out []string
		for _, f := range r.Features {
			if f.Prediction {
				out = append(out, f.Name)
			}
		}
		return out
	}

	got := report(DriftCommand{Config: cfg, Model: "fraud"})
	require.Equal(t, train, got.Reference)
	require.Equal(t, []string{"score"}, prediction(got))
	require.Contains(t, got.Features[0].Scores, ScoreKSExact)
	require.Equal(t, report(DriftCommand{Reference: train, Build: BuildFlags{Prediction: "score"}}), got)

	got = report(DriftCommand{Config: cfg, Model: "churn"})
	require.Equal(t, profile, got.Reference)
	require.Equal(t, report(DriftCommand{Reference: profile}), got)

	got = report(DriftCommand{Config: cfg, Model: "fraud", Reference: "testdata/profile.golden.json"})
	require.Equal(t, "testdata/profile.golden.json", got.Reference)

	got = report(DriftCommand{Config: cfg, Model: "fraud", Build: BuildFlags{Prediction: "income"}})
	require.Equal(t, train, got.Reference)
	require.Equal(t, []string{"income"}, prediction(got))
}

// The flags that build a profile from training data (--bins, --coarse-bins,
// --top-categories, --explained-variance, --no-multivariate, --numeric,
// --categorical) can't apply to a reference that is already a profile, or
// to --config.file's, which is profiled as the sidecar profiles it: given
// with another value than the sidecar's, they are an error naming them,
// not ignored (before, the batch was checked on the sidecar's profile as
// if --bins 7 had not been given). Their defaults, as kingpin fills them
// in, and --prediction pass.
func TestDriftBuildFlagsNeedTrainingData(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/reference.csv")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "train.csv"), data, 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n  - name: fraud\n    drift: {reference: train.csv, prediction_column: score}\n"), 0o644))
	current := shiftedClean(t, 1.5, 0)
	defaults := BuildFlags{Bins: 200, CoarseBins: 10, TopCategories: 20, ExplainedVariance: 0.65}
	for _, tc := range []struct {
		name  string
		build func(*BuildFlags)
		flag  string
	}{
		{"bins", func(b *BuildFlags) { b.Bins = 7 }, "--bins=7"},
		{"coarse bins", func(b *BuildFlags) { b.CoarseBins = 5 }, "--coarse-bins=5"},
		{"top categories", func(b *BuildFlags) { b.TopCategories = 3 }, "--top-categories=3"},
		{"explained variance", func(b *BuildFlags) { b.ExplainedVariance = 0.9 }, "--explained-variance=0.9"},
		{"no multivariate", func(b *BuildFlags) { b.NoMultivariate = true }, "--no-multivariate"},
		{"numeric", func(b *BuildFlags) { b.Numeric = []string{"age"} }, `--numeric="age"`},
		{"categorical", func(b *BuildFlags) { b.Categorical = []string{"plan"} }, `--categorical="plan"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []DriftCommand{
				{Config: cfg, Model: "fraud", Build: defaults},
				{Reference: "testdata/profile.golden.json", Build: defaults},
			} {
				c.Current = current
				tc.build(&c.Build)
				res := run(t, &c, "")
				require.Equal(t, ExitError, res.code, res.stdout)
				require.Contains(t, res.stderr, tc.flag+" applies to training data given with --reference")
			}
		})
	}
	for _, c := range []DriftCommand{
		{Config: cfg, Model: "fraud", Build: defaults},
		{Config: cfg, Model: "fraud", Build: BuildFlags{Prediction: "score"}},
		{Reference: "testdata/profile.golden.json", Build: defaults},
	} {
		c.Current = current
		res := run(t, &c, "")
		require.Equal(t, ExitOK, res.code, res.stderr)
	}
}

// With fixed thresholds, a distance drifts above 0.1 and a test below --alpha.
func TestDriftFixedThresholds(t *testing.T) {
	c := DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-shifted.csv", FixedThresholds: true, Alpha: 0.01, Methods: []string{"income=psi"}}
	r, err := c.Report(Env{})
	require.NoError(t, err)
	age, income := r.Features[0], r.Features[1]
	require.Equal(t, drift.MethodKS, age.Method)
	require.Equal(t, 0.01, *age.Threshold)
	require.False(t, age.Calibrated)
	require.Contains(t, age.Reason, "(fixed threshold)")
	require.Equal(t, drift.MethodPSI, income.Method)
	require.Equal(t, 0.1, *income.Threshold)
	require.Nil(t, income.PValue)
}

// --format is for stdin: a file's known extension still decides its format.
// A current file without any of the reference's columns is surely the wrong
// one, an error rather than "no drift".
func TestDriftFormats(t *testing.T) {
	data, err := os.ReadFile("testdata/current-clean.csv")
	require.NoError(t, err)
	c := DriftCommand{Reference: "testdata/reference.jsonl", Current: "-", Format: "csv", Build: BuildFlags{Prediction: "score"}}
	res := run(t, &c, string(data))
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, "dataset: drifted 0/4 features")

	txt := filepath.Join(t.TempDir(), "current.txt")
	require.NoError(t, os.WriteFile(txt, data, 0o644))
	c = DriftCommand{Reference: "testdata/profile.golden.json", Current: txt, Format: "csv"}
	res = run(t, &c, "")
	require.Equal(t, ExitOK, res.code, res.stderr)

	c = DriftCommand{Reference: "testdata/profile.golden.json", Current: "-", Format: "csv"}
	res = run(t, &c, "height,weight\n1,2\n")
	require.Equal(t, ExitError, res.code)
	require.Equal(t, "exporter drift: stdin: none of the reference's features is a column\n", res.stderr)
}

// Files as Windows tools write them read as the plain ones: a UTF-8 byte
// order mark (before a quoted header, as Excel's "CSV UTF-8" and Python's
// utf-8-sig with QUOTE_ALL write it), CRLF line ends.
func TestDriftWindowsFiles(t *testing.T) {
	want := run(t, &DriftCommand{Reference: "testdata/profile.golden.json", Current: "testdata/current-clean.csv", Output: OutputJSON}, "")
	require.Equal(t, ExitOK, want.code, want.stderr)
	for _, file := range []string{"testdata/current-clean-excel.csv", "testdata/current-clean-bom.jsonl"} {
		t.Run(file, func(t *testing.T) {
			got := run(t, &DriftCommand{Reference: "testdata/profile.golden.json", Current: file, Output: OutputJSON}, "")
			require.Equal(t, ExitOK, got.code, got.stderr)
			require.Empty(t, got.logs)
			require.Equal(t, strings.ReplaceAll(want.stdout, "testdata/current-clean.csv", file), got.stdout)
		})
	}
}

// shiftedClean writes testdata/current-clean.csv with age and income moved
// by the amounts given, and returns its path.
func shiftedClean(t *testing.T, age, income float64) string {
	t.Helper()
	f, err := os.Open("testdata/current-clean.csv")
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"age", "income", "city", "plan", "score"}, recs[0])
	var b strings.Builder
	w := csv.NewWriter(&b)
	require.NoError(t, w.Write(recs[0]))
	for _, r := range recs[1:] {
		for i, d := range []float64{age, income} {
			if r[i] == "" {
				continue
			}
			v, err := strconv.ParseFloat(r[i], 64)
			require.NoError(t, err)
			r[i] = strconv.FormatFloat(v+d, 'f', -1, 64)
		}
		require.NoError(t, w.Write(r))
	}
	w.Flush()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("current-age%+g-income%+g.csv", age, income))
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// wantModel decides for the model from the report's features as Alibi
// Detect and statsmodels' multipletests describe it, written out apart from
// drift.Correction: the p-values of the ready inputs (the prediction left
// out), each compared with α/K (bonferroni), α·k*/K for the largest k whose
// k-th smallest p-value is below α·k/K, else α/K (fdr), or α (none).
func wantModel(t *testing.T, features []FeatureResult, correction drift.Correction, alpha float64) drift.ModelResult {
	t.Helper()
	var ps []float64
	for _, f := range features {
		if !f.Ready || f.Prediction || f.Name == drift.ReconstructionError {
			continue
		}
		require.NotNil(t, f.PValue, "%s is decided by a test", f.Name)
		ps = append(ps, *f.PValue)
	}
	k := float64(len(ps))
	threshold := alpha
	switch correction {
	case drift.CorrectionBonferroni:
		threshold = alpha / k
	case drift.CorrectionFDR:
		sorted := slices.Clone(ps)
		sort.Float64s(sorted)
		threshold = alpha / k
		for i := len(sorted); i >= 1; i-- {
			if crit := alpha * float64(i) / k; sorted[i-1] < crit {
				threshold = crit
				break
			}
		}
	}
	out := drift.ModelResult{Correction: correction, Alpha: alpha, Features: len(ps), Threshold: threshold}
	for _, p := range ps {
		if p < threshold {
			out.Drifted++
		}
	}
	out.Drift = out.Drifted > 0
	return out
}

// The model-level decision of the report is the corrected one, checked
// against wantModel for every correction and level on data where they
// differ: age moved 1.5 years (p 0.033: the feature drifts at 0.05, the
// model only without correction); age 2.5 years and income 35 (p 0.0008
// and 0.022: Bonferroni's 0.0125 takes age, Benjamini–Hochberg's 0.025 both);
// the shifted and clean data. The text report's model line says the same.
func TestDriftModel(t *testing.T) {
	slight, two := shiftedClean(t, 1.5, 0), shiftedClean(t, 2.5, 35)
	type want struct {
		drifted   int
		threshold float64
	}
	for _, tc := range []struct {
		name    string
		current string
		// want is the decision at α = 0.05 by correction, as the figures
		// of the data make it: the cases the test is about.
		want map[drift.Correction]want
	}{
		{"age slightly moved", slight, map[drift.Correction]want{"bonferroni": {0, 0.0125}, "fdr": {0, 0.0125}, "none": {1, 0.05}}},
		{"age and income moved", two, map[drift.Correction]want{"bonferroni": {1, 0.0125}, "fdr": {2, 0.025}, "none": {2, 0.05}}},
		{"shifted", "testdata/current-shifted.csv", map[drift.Correction]want{"bonferroni": {2, 0.0125}, "fdr": {2, 0.025}, "none": {2, 0.05}}},
		{"clean", "testdata/current-clean.csv", map[drift.Correction]want{"bonferroni": {0, 0.0125}, "fdr": {0, 0.0125}, "none": {0, 0.05}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, corr := range drift.Corrections() {
				for _, alpha := range []float64{0, 0.01, 0.2} {
					c := DriftCommand{Reference: "testdata/reference.csv", Current: tc.current, Output: OutputJSON,
						Correction: string(corr), CorrectionAlpha: alpha, Build: BuildFlags{Prediction: "score"}}
					res := run(t, &c, "")
					require.Equal(t, ExitOK, res.code, res.stderr)
					var r Report
					require.NoError(t, json.Unmarshal([]byte(res.stdout), &r))
					level := alpha
					if level == 0 {
						level = 0.05 // --alpha's
					}
					w := wantModel(t, r.Features, corr, level)
					got := r.Model
					require.InEpsilon(t, w.Threshold, got.Threshold, 1e-12, "%s α=%g", corr, alpha)
					got.Threshold, got.Reason = w.Threshold, ""
					require.Equal(t, w, got, "%s α=%g", corr, alpha)
					require.Equal(t, 4, got.Features, "the prediction left out")
					if alpha == 0 {
						require.Equal(t, tc.want[corr].drifted, got.Drifted, "%s", corr)
						require.InEpsilon(t, tc.want[corr].threshold, got.Threshold, 1e-12, "%s", corr)
						require.Contains(t, r.Model.Reason, fmt.Sprintf("(%s, α=0.05)", corr))

						c.Output = OutputText
						res = run(t, &c, "")
						require.Equal(t, ExitOK, res.code, res.stderr)
						verdict := "no drift"
						if w.Drift {
							verdict = "drift"
						}
						require.Contains(t, res.stdout, fmt.Sprintf("\nmodel: %d/4 features' p-values < %.4g (%s, α=0.05): %s\ndataset: ", w.Drifted, w.Threshold, corr, verdict))
					}
				}
			}
		})
	}

	// --alpha is the default level of the model's decision too.
	r, err := (&DriftCommand{Reference: "testdata/reference.csv", Current: two, Alpha: 0.01, Build: BuildFlags{Prediction: "score"}}).Report(Env{})
	require.NoError(t, err)
	require.Equal(t, drift.CorrectionBonferroni, r.Model.Correction, "the default")
	require.Equal(t, 0.01, r.Model.Alpha)
	require.Equal(t, 0.0025, r.Model.Threshold)
}

// A feature decided by a distance takes part in the model's decision with
// the p-value of the test it would get with a small reference: plan (two
// values) with z's, whose p-value is 2(1 − Φ(|z|)) of its z score, age
// (numeric) with KS's. So overriding their methods changes their own
// decisions, not the model's.
func TestDriftModelDistances(t *testing.T) {
	current := shiftedClean(t, 2.5, 35)
	report := func(methods ...string) *Report {
		t.Helper()
		r, err := (&DriftCommand{Reference: "testdata/reference.csv", Current: current, Methods: methods, Correction: "fdr", Build: BuildFlags{Prediction: "score"}}).Report(Env{})
		require.NoError(t, err)
		return r
	}
	tests, distances := report(), report("age=wasserstein", "plan=psi", "city=jensenshannon")
	for _, i := range []int{0, 2, 3} { // age, city, plan
		f := distances.Features[i]
		require.Equal(t, tests.Features[i].Name, f.Name)
		require.False(t, f.Method.HasPValue(), f.Name)
		require.Nil(t, f.PValue, f.Name)
	}
	plan := tests.Features[3]
	require.Equal(t, drift.MethodZ, plan.Method)
	require.InDelta(t, math.Erfc(plan.Scores["z"]/math.Sqrt2), *plan.PValue, 1e-12)
	require.Equal(t, tests.Model, distances.Model)
	require.Equal(t, wantModel(t, tests.Features, drift.CorrectionFDR, 0.05).Drifted, distances.Model.Drifted)
	require.Equal(t, 2, distances.Model.Drifted)
}

// --fail-on-model-drift fails the run on the model's decision, and
// --fail-on-drift on the dataset's, as before; with both, either fails it.
// Moving age alone drifts one input of four: the model, not the dataset.
func TestDriftModelExitCodes(t *testing.T) {
	age, slight := shiftedClean(t, 2.5, 0), shiftedClean(t, 1.5, 0)
	for _, tc := range []struct {
		name string
		cmd  DriftCommand
		want int
	}{
		{"age moved, fail on drift", DriftCommand{Current: age, FailOnDrift: true}, ExitOK},
		{"age moved, fail on model drift", DriftCommand{Current: age, FailOnModelDrift: true}, ExitDrift},
		{"age moved, both", DriftCommand{Current: age, FailOnDrift: true, FailOnModelDrift: true}, ExitDrift},
		{"age moved, report only", DriftCommand{Current: age}, ExitOK},
		{"age moved, model drift at a lower level", DriftCommand{Current: age, FailOnModelDrift: true, CorrectionAlpha: 0.001}, ExitOK},
		{"age slightly moved, fail on model drift", DriftCommand{Current: slight, FailOnModelDrift: true}, ExitOK},
		{"age slightly moved, uncorrected", DriftCommand{Current: slight, FailOnModelDrift: true, Correction: "none"}, ExitDrift},
		{"shifted, fail on drift", DriftCommand{Current: "testdata/current-shifted.csv", FailOnDrift: true}, ExitDrift},
		{"shifted, fail on model drift", DriftCommand{Current: "testdata/current-shifted.csv", FailOnModelDrift: true}, ExitDrift},
		{"clean, both", DriftCommand{Current: "testdata/current-clean.csv", FailOnDrift: true, FailOnModelDrift: true}, ExitOK},
		{"too few values to decide", DriftCommand{Current: "testdata/current-shifted.csv", FailOnModelDrift: true, MinSamples: 1000}, ExitOK},
		{"bad current", DriftCommand{Current: "testdata/ragged.csv", FailOnModelDrift: true}, ExitError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			c.Reference, c.Build.Prediction = "testdata/reference.csv", "score"
			res := run(t, &c, "")
			require.Equal(t, tc.want, res.code, res.stdout+res.stderr)
		})
	}
	res := run(t, &DriftCommand{Reference: "testdata/reference.csv", Current: "testdata/current-shifted.csv", MinSamples: 1000, FailOnModelDrift: true}, "")
	require.Contains(t, res.stdout, "\nmodel: no feature ready: no drift\ndataset: no feature ready: no drift\n")
}
