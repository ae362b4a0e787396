package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// result is what one run of the binary did.
type result struct {
	code           int
	stdout, stderr string
}

func runBinary(t *testing.T, bin string, args ...string) result {
	t.Helper()
	return runBinaryStdin(t, bin, "", args...)
}

// runBinaryStdin runs bin with the file stdin (none if "") as its standard
// input.
func runBinaryStdin(t *testing.T, bin, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if stdin != "" {
		f, err := os.Open(stdin)
		require.NoError(t, err)
		defer f.Close()
		cmd.Stdin = f
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// The drift commands, end to end: profile the training data, gate on drift
// with the exit code, and write rules promtool accepts.
func TestDriftCommands(t *testing.T) {
	bin := buildBinary(t)
	data := func(name string) string { return filepath.Join("..", "..", "internal", "driftcli", "testdata", name) }
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile.json")

	r := runBinary(t, bin, "profile", "--input", data("reference.csv"), "--output", profile, "--prediction", "score")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, `exporter profile: wrote `+profile+`: 5 features (3 numeric, 2 categorical; prediction "score") from 1000 rows of `+data("reference.csv")+"\n", r.stderr)
	b, err := os.ReadFile(profile)
	require.NoError(t, err)
	require.Contains(t, string(b), `"version": 1`)

	// current-clean.csv with every age 2.5 years more: age drifts (KS
	// p = 0.0008), the other inputs do not.
	ageMoved := filepath.Join(dir, "current-age-moved.csv")
	clean, err := os.ReadFile(data("current-clean.csv"))
	require.NoError(t, err)
	recs, err := csv.NewReader(bytes.NewReader(clean)).ReadAll()
	require.NoError(t, err)
	for _, r := range recs[1:] {
		if age, err := strconv.ParseFloat(r[0], 64); err == nil {
			r[0] = strconv.FormatFloat(age+2.5, 'f', -1, 64)
		}
	}
	var moved bytes.Buffer
	require.NoError(t, csv.NewWriter(&moved).WriteAll(recs))
	require.NoError(t, os.WriteFile(ageMoved, moved.Bytes(), 0o644))

	// The model's own correction, which --correction and
	// --correction-alpha, given, override; the model's own reference,
	// training data relative to the configuration file, with the
	// prediction in its prediction_column, which --reference, given,
	// overrides.
	train, err := os.ReadFile(data("reference.csv"))
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "ref"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ref", "train.csv"), train, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ref", "moved.csv"), moved.Bytes(), 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("models:\n"+
		"  - name: strict\n"+
		"    drift: {correction: none, correction_alpha: 0.001}\n"+
		"  - name: fraud\n"+
		"    drift: {reference: ref/train.csv, prediction_column: score}\n"+
		"  - name: retrained\n"+
		"    drift: {reference: ref/moved.csv, prediction_column: score}\n"), 0o644))

	t.Run("drift", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			out  string
		}{
			{"shifted against the profile", []string{"--reference", profile, "--current", data("current-shifted.csv"), "--fail-on-drift"},
				1, "dataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"},
			{"clean against the profile", []string{"--reference", profile, "--current", data("current-clean.csv"), "--fail-on-drift"},
				0, "dataset: drifted 0/4 features (share 0 < 0.5): no drift\n"},
			{"shifted against raw data, jsonl", []string{"--reference", data("reference.csv"), "--current", data("current-shifted.jsonl"), "--prediction", "score", "--fail-on-drift"},
				1, "dataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"},
			{"shifted, without --fail-on-drift", []string{"--reference", profile, "--current", data("current-shifted.csv")},
				0, "dataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"},
			{"overridden methods", []string{"--reference", profile, "--current", data("current-shifted.csv"), "--method", "age=psi", "--method", "city=jensenshannon", "--fixed-thresholds", "--alpha", "0.01", "--fail-on-drift"},
				1, "dataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"},
			{"shifted, fail on model drift", []string{"--reference", profile, "--current", data("current-shifted.csv"), "--fail-on-model-drift"},
				1, "model: 2/4 features' p-values < 0.0125 (bonferroni, α=0.05): drift\ndataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"},
			{"shifted, fdr at 0.1", []string{"--reference", profile, "--current", data("current-shifted.csv"), "--correction", "fdr", "--correction-alpha", "0.1", "--fail-on-model-drift"},
				1, "model: 2/4 features' p-values < 0.05 (fdr, α=0.1): drift\ndataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"},
			{"clean, uncorrected", []string{"--reference", profile, "--current", data("current-clean.csv"), "--correction", "none", "--fail-on-model-drift", "--fail-on-drift"},
				0, "model: 0/4 features' p-values < 0.05 (none, α=0.05): no drift\ndataset: drifted 0/4 features (share 0 < 0.5): no drift\n"},
			// One input of four drifted: the model, not the dataset.
			{"age moved, fail on drift", []string{"--reference", profile, "--current", ageMoved, "--fail-on-drift"},
				0, "model: 1/4 features' p-values < 0.0125 (bonferroni, α=0.05): drift\ndataset: drifted 1/4 features (share 0.25 < 0.5): no drift\n"},
			{"age moved, fail on model drift", []string{"--reference", profile, "--current", ageMoved, "--fail-on-model-drift"},
				1, "model: 1/4 features' p-values < 0.0125 (bonferroni, α=0.05): drift\ndataset: drifted 1/4 features (share 0.25 < 0.5): no drift\n"},
			{"age moved, the model's correction", []string{"--reference", profile, "--current", ageMoved, "--config.file", cfg, "--model", "strict", "--fail-on-model-drift"},
				1, "model: 1/4 features' p-values < 0.001 (none, α=0.001): drift\ndataset: drifted 1/4 features (share 0.25 < 0.5): no drift\n"},
			{"age moved, --correction over the model's", []string{"--reference", profile, "--current", ageMoved, "--config.file", cfg, "--model", "strict", "--correction", "bonferroni", "--fail-on-model-drift"},
				0, "model: 0/4 features' p-values < 0.00025 (bonferroni, α=0.001): no drift\ndataset: drifted 1/4 features (share 0.25 < 0.5): no drift\n"},
			{"age moved, both flags over the model's", []string{"--reference", profile, "--current", ageMoved, "--config.file", cfg, "--model", "strict", "--correction", "bonferroni", "--correction-alpha", "0.05", "--fail-on-model-drift"},
				1, "model: 1/4 features' p-values < 0.0125 (bonferroni, α=0.05): drift\ndataset: drifted 1/4 features (share 0.25 < 0.5): no drift\n"},
			{"shifted against the model's reference", []string{"--current", data("current-shifted.csv"), "--config.file", cfg, "--model", "fraud", "--fail-on-drift"},
				1, "model: 2/4 features' p-values < 0.0125 (bonferroni, α=0.05): drift\ndataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"},
			{"age moved against the model's reference", []string{"--current", ageMoved, "--config.file", cfg, "--model", "retrained", "--fail-on-model-drift"},
				0, "model: 0/4 features' p-values < 0.0125 (bonferroni, α=0.05): no drift\ndataset: drifted 0/4 features (share 0 < 0.5): no drift\n"},
			{"age moved, --reference over the model's", []string{"--reference", profile, "--current", ageMoved, "--config.file", cfg, "--model", "retrained", "--fail-on-model-drift"},
				1, "model: 1/4 features' p-values < 0.0125 (bonferroni, α=0.05): drift\ndataset: drifted 1/4 features (share 0.25 < 0.5): no drift\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := runBinary(t, bin, append([]string{"drift"}, tc.args...)...)
				require.Equal(t, tc.code, r.code, r.stderr)
				require.Empty(t, r.stderr)
				require.True(t, strings.HasPrefix(r.stdout, "FEATURE "), r.stdout)
				require.True(t, strings.HasSuffix(r.stdout, tc.out), r.stdout)
			})
		}
	})

	// "-" is stdin or stdout, written as README does: a separate argument
	// (kingpin alone reads it as an empty value).
	t.Run("stdin and stdout", func(t *testing.T) {
		r := runBinaryStdin(t, bin, data("reference.csv"), "profile", "--input", "-", "--format", "csv", "--output", "-", "--prediction", "score")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, string(b), r.stdout)
		require.Equal(t, `exporter profile: wrote stdout: 5 features (3 numeric, 2 categorical; prediction "score") from 1000 rows of stdin`+"\n", r.stderr)

		r = runBinaryStdin(t, bin, data("current-shifted.jsonl"), "drift", "--reference", profile, "--current", "-", "--format", "jsonl", "--fail-on-drift")
		require.Equal(t, 1, r.code, r.stderr)
		require.True(t, strings.HasSuffix(r.stdout, "dataset: drifted 2/4 features (share 0.5 ≥ 0.5): drift\n"), r.stdout)

		r = runBinaryStdin(t, bin, data("reference.csv"), "drift", "--reference", "-", "--format", "csv", "--current", data("current-clean.csv"), "--prediction", "score", "--fail-on-drift")
		require.Equal(t, 0, r.code, r.stderr)

		// A bool flag takes no "-"; after "--" it stays an argument.
		r = runBinary(t, bin, "drift", "--reference", profile, "--current", data("current-clean.csv"), "--fail-on-drift", "-")
		require.Equal(t, 2, r.code)
		r = runBinary(t, bin, "drift", "--reference", profile, "--current", data("current-clean.csv"), "--", "-")
		require.Equal(t, 2, r.code)
	})

	t.Run("drift json", func(t *testing.T) {
		r := runBinary(t, bin, "drift", "--reference", profile, "--current", data("current-shifted.csv"), "--output", "json", "--fail-on-drift")
		require.Equal(t, 1, r.code, r.stderr)
		var report struct {
			Features []struct {
				Name    string             `json:"name"`
				Method  string             `json:"method"`
				PValue  *float64           `json:"p_value"`
				Drifted bool               `json:"drifted"`
				Scores  map[string]float64 `json:"scores"`
			} `json:"features"`
			DriftShare     float64 `json:"drift_share"`
			DatasetDrifted bool    `json:"dataset_drifted"`
			Model          struct {
				Correction string  `json:"correction"`
				Alpha      float64 `json:"alpha"`
				Features   int     `json:"features"`
				Drifted    int     `json:"drifted"`
				Threshold  float64 `json:"threshold"`
				Drift      bool    `json:"drift"`
				Reason     string  `json:"reason"`
			} `json:"model"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &report))
		require.True(t, report.DatasetDrifted)
		require.Equal(t, 0.5, report.DriftShare)
		// age and city's p-values are below 0.05/4, income's and plan's
		// are not; the prediction's does not count.
		m := report.Model
		require.Equal(t, "bonferroni", m.Correction)
		require.Equal(t, 0.05, m.Alpha)
		require.Equal(t, 4, m.Features)
		require.Equal(t, 2, m.Drifted)
		require.Equal(t, 0.0125, m.Threshold)
		require.True(t, m.Drift)
		require.Equal(t, "drift: 2 of 4 features' p-values below 0.0125 (bonferroni, α=0.05): [age city]", m.Reason)
		require.Equal(t, "age", report.Features[0].Name)
		require.True(t, report.Features[0].Drifted)
		require.NotNil(t, report.Features[0].PValue)
		require.Contains(t, report.Features[0].Scores, "psi")
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"ragged data", []string{"drift", "--reference", profile, "--current", data("ragged.csv")},
				"exporter drift: " + data("ragged.csv") + `:3: column "score": ragged row (4 fields, want 5)` + "\n"},
			{"ragged data, fail on drift", []string{"drift", "--reference", data("ragged.csv"), "--current", data("current-clean.csv"), "--fail-on-drift"},
				"exporter drift: " + data("ragged.csv") + `:3: column "score": ragged row (4 fields, want 5)` + "\n"},
			{"bad output", []string{"drift", "--reference", profile, "--current", data("current-clean.csv"), "--output", "yaml"},
				"exporter: error: enum value must be one of text,json, got 'yaml', try --help\n"},
			{"bad correction", []string{"drift", "--reference", profile, "--current", data("current-clean.csv"), "--correction", "holm"},
				"exporter: error: enum value must be one of bonferroni,fdr,none, got 'holm', try --help\n"},
			{"bad correction alpha", []string{"drift", "--reference", profile, "--current", data("current-clean.csv"), "--correction-alpha", "1.5"},
				"exporter drift: --correction-alpha must be in (0, 1), got 1.5\n"},
			{"no reference", []string{"drift", "--current", data("current-clean.csv")},
				"exporter drift: --reference is required, or --config.file and --model of a model with models[].drift.reference\n"},
			{"no reference of the model's", []string{"drift", "--current", data("current-clean.csv"), "--config.file", cfg, "--model", "strict"},
				"exporter drift: --reference is required: model \"strict\" of " + cfg + " has no models[].drift.reference\n"},
			{"missing flag", []string{"drift", "--reference", profile},
				"exporter: error: required flag(s) '--current' not provided, try --help\n"},
			{"bad jsonl", []string{"profile", "--input", data("bad.jsonl"), "--output", filepath.Join(dir, "p.json")},
				"exporter profile: " + data("bad.jsonl") + ":2:21: invalid character 'o' looking for beginning of value\n"},
			{"bad window", []string{"rules", "--profile", profile, "--windows", "5m,1x"},
				`exporter rules: --windows="5m,1x": "1x" is not a positive duration such as 5m, 1h or 1d` + "\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := runBinary(t, bin, tc.args...)
				require.Equal(t, 2, r.code)
				require.Empty(t, r.stdout)
				require.Equal(t, tc.want, r.stderr)
			})
		}
	})

	t.Run("rules", func(t *testing.T) {
		r := runBinary(t, bin, "rules", "--profile", profile)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "record: modelmon:feature_drift_psi:1d\n")
		require.Contains(t, r.stdout, "record: modelmon:feature_drift_psi:total\n")

		file := filepath.Join(dir, "drift.rules.yml")
		r = runBinary(t, bin, "rules", "--profile", profile, "--model", "fraud", "--windows", "5m,1h", "--output", file)
		require.Equal(t, 0, r.code, r.stderr)
		require.Empty(t, r.stdout)
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		require.Contains(t, string(b), `model="fraud"`)
		require.NotContains(t, string(b), "psi:1d")
		out, err := exec.Command(prometheustest.Promtool(t), "check", "rules", file).CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "SUCCESS: 19 rules found")
	})
}
