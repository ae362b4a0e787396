package driftcli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// The same data as CSV, as JSON Lines and on stdin give the same profile, the
// golden one.
func TestProfile(t *testing.T) {
	csv, err := os.ReadFile("testdata/reference.csv")
	require.NoError(t, err)
	pq := filepath.Join(t.TempDir(), "reference.parquet")
	require.NoError(t, os.WriteFile(pq, referenceParquet(t, string(csv)), 0o644))
	for _, tc := range []struct {
		name    string
		cmd     ProfileCommand
		stdin   string
		summary string
	}{
		{
			name:    "csv",
			cmd:     ProfileCommand{Input: "testdata/reference.csv"},
			summary: `exporter profile: wrote OUT: 5 features (3 numeric, 2 categorical; prediction "score") from 1000 rows of testdata/reference.csv` + "\n",
		},
		{
			name:    "jsonl",
			cmd:     ProfileCommand{Input: "testdata/reference.jsonl"},
			summary: `exporter profile: wrote OUT: 5 features (3 numeric, 2 categorical; prediction "score") from 1000 rows of testdata/reference.jsonl` + "\n",
		},
		{
			name:    "parquet",
			cmd:     ProfileCommand{Input: pq},
			summary: `exporter profile: wrote OUT: 5 features (3 numeric, 2 categorical; prediction "score") from 1000 rows of ` + pq + "\n",
		},
		{
			name:    "stdin",
			cmd:     ProfileCommand{Input: "-", Format: "csv"},
			stdin:   string(csv),
			summary: `exporter profile: wrote OUT: 5 features (3 numeric, 2 categorical; prediction "score") from 1000 rows of stdin` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "profile.json")
			c := tc.cmd
			c.Output = out
			c.Build = BuildFlags{Prediction: "score"}
			res := run(t, &c, tc.stdin)
			require.Equal(t, ExitOK, res.code, res.stderr)
			require.Equal(t, strings.Replace(tc.summary, "OUT", out, 1), res.stderr)
			got, err := os.ReadFile(out)
			require.NoError(t, err)
			golden(t, "profile.golden.json", got)
			info, err := os.Stat(out)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o644), info.Mode().Perm())
		})
	}
}

// The build flags reach the profile: bins, coarse bins, top categories, types.
func TestProfileOptions(t *testing.T) {
	c := ProfileCommand{Input: "testdata/reference.csv", Output: "-", Build: BuildFlags{
		Bins: 50, CoarseBins: 4, TopCategories: 2, Categorical: []string{"age"}, Numeric: []string{"income,score"},
	}}
	res := run(t, &c, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Equal(t, "exporter profile: wrote stdout: 5 features (2 numeric, 3 categorical) from 1000 rows of testdata/reference.csv\n", res.stderr)
	p, err := drift.Load(strings.NewReader(res.stdout))
	require.NoError(t, err)

	age, ok := p.Feature("age")
	require.True(t, ok)
	require.Equal(t, drift.Categorical, age.Kind)
	require.Len(t, age.Categorical.Categories, 2)
	income, _ := p.Feature("income")
	require.Equal(t, drift.Numeric, income.Kind)
	require.LessOrEqual(t, len(income.Numeric.Edges), 2*50+1)
	require.Len(t, income.Numeric.Coarse, 4+1)
	for _, f := range p.Features {
		require.False(t, f.Prediction)
	}
}

// Errors name the file, line and column, as drift's readers give them.
func TestProfileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cmd  ProfileCommand
		want string
	}{
		{"ragged csv", ProfileCommand{Input: "testdata/ragged.csv"},
			`exporter profile: testdata/ragged.csv:3: column "score": ragged row (4 fields, want 5)`},
		{"semicolon-separated", ProfileCommand{Input: "testdata/semicolon.csv"},
			`exporter profile: testdata/semicolon.csv:1: one column named "age;income;city;plan;score": fields must be separated by commas, not ";"`},
		{"gzip extension", ProfileCommand{Input: "testdata/reference.csv.gz"},
			`exporter profile: testdata/reference.csv.gz: gzip-compressed data is not read: decompress it first, or pipe it in (gunzip -c FILE | exporter ... - --format csv)`},
		{"gzip content", ProfileCommand{Input: "testdata/gzipped.csv"},
			`exporter profile: testdata/gzipped.csv: gzip-compressed data is not read: decompress it first, or pipe it in (gunzip -c FILE | exporter ... - --format csv)`},
		{"pandas index", ProfileCommand{Input: "testdata/pandas-index.csv"},
			`exporter profile: testdata/pandas-index.csv:1: column 1: empty name (an index, as pandas' to_csv writes by default? write the file with index=False)`},
		{"json array", ProfileCommand{Input: "testdata/array.jsonl"},
			`exporter profile: testdata/array.jsonl:1: a JSON array, not an object: JSON Lines has one object per line`},
		{"bad jsonl", ProfileCommand{Input: "testdata/bad.jsonl"},
			`exporter profile: testdata/bad.jsonl:2:21: invalid character 'o' looking for beginning of value`},
		{"not a number", ProfileCommand{Input: "testdata/reference.csv", Build: BuildFlags{Numeric: []string{"city"}}},
			`exporter profile: testdata/reference.csv:2: column "city": "lima" is not a number`},
		{"no such column", ProfileCommand{Input: "testdata/reference.csv", Build: BuildFlags{Categorical: []string{"zip"}}},
			`exporter profile: testdata/reference.csv:1: missing column "zip"`},
		{"no prediction column", ProfileCommand{Input: "testdata/reference.csv", Build: BuildFlags{Prediction: "label"}},
			`exporter profile: testdata/reference.csv: couldn't build the profile: missing prediction column "label"`},
		{"bad bins", ProfileCommand{Input: "testdata/reference.csv", Build: BuildFlags{Bins: 5, CoarseBins: 10}},
			`exporter profile: testdata/reference.csv: couldn't build the profile: coarse bins (10) must not exceed bins (5)`},
		{"unknown extension", ProfileCommand{Input: "testdata/reference.txt"},
			`exporter profile: testdata/reference.txt: unknown file type (want .csv, .jsonl, .ndjson or .parquet, or set --format)`},
		{"stdin without format", ProfileCommand{Input: "-"},
			`exporter profile: reading stdin (-) needs --format=csv, --format=jsonl or --format=parquet`},
		{"unknown format", ProfileCommand{Input: "-", Format: "xml"},
			`exporter profile: unknown format "xml" (want csv, jsonl or parquet)`},
		{"no file", ProfileCommand{Input: "testdata/nope.csv"},
			`exporter profile: open testdata/nope.csv: no such file or directory`},
		{"unwritable", ProfileCommand{Input: "testdata/reference.csv", Output: filepath.Join(dir, "no", "p.json")},
			`exporter profile: couldn't write ` + filepath.Join(dir, "no", "p.json") + `: open ` + dir + `/no/`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cmd
			if c.Output == "" {
				c.Output = filepath.Join(dir, "p.json")
			}
			res := run(t, &c, "")
			require.Equal(t, ExitError, res.code)
			require.Empty(t, res.stdout)
			if tc.name == "unwritable" {
				require.Contains(t, res.stderr, tc.want)
				return
			}
			require.Equal(t, tc.want+"\n", res.stderr)
			_, err := os.Stat(filepath.Join(dir, "p.json"))
			require.ErrorIs(t, err, os.ErrNotExist, "no output on error")
		})
	}
}

// A profile (or rules, alerts: any --output) is written as the sidecar's
// state is, whole or not at all: a write that fails (a full disk) leaves
// no file where there was none, the last one as it was, and no temporary
// file.
func TestProfileFailedWrite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "profile.json")
	profile := func(bins int) func() error {
		return func() error {
			c := ProfileCommand{Input: "testdata/reference.csv", Output: out, Build: BuildFlags{Bins: bins}}
			if res := run(t, &c, ""); res.code != ExitOK {
				return errors.New(res.stderr)
			}
			return nil
		}
	}
	err := statefiletest.FailWrites(t, profile(0), out)
	require.ErrorContains(t, err, "exporter profile: couldn't write "+out+": ")
	require.ErrorContains(t, err, "no space left on device")
	require.NoFileExists(t, out)

	require.NoError(t, profile(0)())
	err = statefiletest.FailWrites(t, profile(50), out)
	require.ErrorContains(t, err, "no space left on device")
}

// A numeric column spoilt by markers of missing values the readers don't
// know (pandas' markers in CSV are missing; in JSON Lines a string is a
// string), or by thousands separators, is read as categorical, as README
// says, and not silently: profile warns, naming the column and a value.
func TestProfileMostlyNumbers(t *testing.T) {
	dir := t.TempDir()
	var na, jsonl, thousands strings.Builder
	na.WriteString("age,city\n")
	thousands.WriteString("income,city\n")
	for i := range 200 {
		age := strconv.Itoa(20 + i%50)
		if i%4 == 0 {
			age = "n.a."
		}
		fmt.Fprintf(&na, "%s,c%d\n", age, i%3)
		if i%4 == 0 {
			age = `"NA"`
		}
		fmt.Fprintf(&jsonl, "{\"age\": %s, \"city\": \"c%d\"}\n", age, i%3)
		fmt.Fprintf(&thousands, "\"%d,%03d.50\",c%d\n", 1+i%9, i, i%3)
	}
	for _, tc := range []struct{ name, data, col, want string }{
		{"na.csv", na.String(), "age", `values=200 not_numbers=50 example=n.a.`},
		{"na.jsonl", jsonl.String(), "age", `values=200 not_numbers=50 example=NA`},
		{"thousands.csv", thousands.String(), "income", `values=200 not_numbers=200 example=1,000.50`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name)
			require.NoError(t, os.WriteFile(file, []byte(tc.data), 0o644))
			res := run(t, &ProfileCommand{Input: file, Output: filepath.Join(dir, "p.json")}, "")
			require.Equal(t, ExitOK, res.code, res.stderr)
			require.Contains(t, res.stderr, "2 features (0 numeric, 2 categorical)")
			require.Contains(t, res.logs, `msg="Column read as categorical, though most of its values look like numbers" file=`+file+" column="+tc.col+" "+tc.want)

			res = run(t, &ProfileCommand{Input: file, Output: filepath.Join(dir, "p.json"), Build: BuildFlags{Categorical: []string{tc.col}}}, "")
			require.Equal(t, ExitOK, res.code, res.stderr)
			require.Empty(t, res.logs, "--categorical silences it")
		})
	}
	res := run(t, &ProfileCommand{Input: "testdata/reference.csv", Output: filepath.Join(dir, "p.json")}, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Empty(t, res.logs)
}

// A JSON Lines file where some lines have "user": null and others a user
// object profiles the object's members only, with no feature "user"; drift
// on such a batch warns of no column the reference lacks.
func TestProfileJSONLNullObject(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 300 {
		if i%5 == 0 {
			b.WriteString(`{"amount": ` + strconv.Itoa(i%50) + `, "user": null}` + "\n")
			continue
		}
		fmt.Fprintf(&b, `{"amount": %d, "user": {"age": %d, "country": "%s"}}`+"\n", i%50, 20+i%40, []string{"FR", "DE", "PE"}[i%3])
	}
	file := filepath.Join(dir, "train.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o644))
	profile := filepath.Join(dir, "profile.json")
	res := run(t, &ProfileCommand{Input: file, Output: profile, Build: BuildFlags{NoMultivariate: true}}, "")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Contains(t, res.stderr, "3 features (2 numeric, 1 categorical)")
	f, err := os.Open(profile)
	require.NoError(t, err)
	defer f.Close()
	p, err := drift.Load(f)
	require.NoError(t, err)
	var names []string
	for _, f := range p.Features {
		names = append(names, f.Name)
	}
	require.Equal(t, []string{"amount", "user.age", "user.country"}, names)
	age, _ := p.Feature("user.age")
	require.Equal(t, int64(60), age.Missing, "the null users' ages are missing")

	r, err := (&DriftCommand{Reference: profile, Current: file}).Report(Env{})
	require.NoError(t, err)
	require.Empty(t, r.Warnings)
}

// With --config.file and --model, a class of the training data's
// prediction that the model's models[].classes lacks (a typo) fails the
// profile: the sidecar reads the model's probability vectors by those
// classes, so that every prediction of that class would drift. Classes
// the data lack, and a model without classes, are fine.
func TestProfileChecksClasses(t *testing.T) {
	dir := t.TempDir()
	train := filepath.Join(dir, "train.csv")
	var b strings.Builder
	b.WriteString("amount,label\n")
	for i := range 200 {
		fmt.Fprintf(&b, "%d,%s\n", 90+i%20, []string{"cat", "dog", ""}[i%3])
	}
	require.NoError(t, os.WriteFile(train, []byte(b.String()), 0o644))
	cfg := filepath.Join(dir, "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(`models:
  - name: typo
    classes: [cat, dgo]
  - name: more
    classes: [cat, dog, bird]
  - name: none
`), 0o644))
	profile := func(model string) outcome {
		c := ProfileCommand{Input: train, Output: filepath.Join(dir, model+".json"), Build: BuildFlags{Prediction: "label"}, Config: cfg, Model: model}
		return run(t, &c, "")
	}
	res := profile("typo")
	require.Equal(t, ExitError, res.code)
	require.Equal(t, `exporter profile: `+train+`: the prediction "label" has the class "dog", which model "typo"'s models[].classes in `+cfg+` lacks (cat, dgo): the model's probability vectors and class indexes would never name it`+"\n", res.stderr)
	_, err := os.Stat(filepath.Join(dir, "typo.json"))
	require.ErrorIs(t, err, os.ErrNotExist, "no profile written")
	for _, model := range []string{"more", "none"} {
		res := profile(model)
		require.Equal(t, ExitOK, res.code, res.stderr)
	}
	c := ProfileCommand{Input: train, Output: filepath.Join(dir, "x.json"), Config: cfg}
	res = run(t, &c, "")
	require.Equal(t, ExitError, res.code)
	require.Contains(t, res.stderr, "--config.file needs --model")
}
