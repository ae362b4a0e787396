package driftcli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The HTTP client's idle connections to Prometheus outlive a test by design.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// runner is a command.
type runner interface{ Run(Env) int }

// outcome is what a command did.
type outcome struct {
	code           int
	stdout, stderr string
	logs           string
}

// run runs c with stdin, capturing its output and warnings.
func run(t *testing.T, c runner, stdin string) outcome {
	t.Helper()
	var out, errOut, logs bytes.Buffer
	env := Env{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime})),
	}
	code := c.Run(env)
	return outcome{code: code, stdout: out.String(), stderr: errOut.String(), logs: logs.String()}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	require.Equal(t, string(want), string(got), "%s differs; run go test -update if the change is intended", path)
}

// goldenJSON is golden for JSON, with numbers equal to 1e-9 relative: the
// last digits of a float can differ between platforms (fused multiply-add).
func goldenJSON(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	var w, g any
	require.NoError(t, json.Unmarshal(want, &w))
	require.NoError(t, json.Unmarshal(got, &g))
	if diff := jsonDiff("$", w, g); diff != "" {
		t.Fatalf("%s differs at %s; run go test -update if the change is intended\ngot:\n%s", path, diff, got)
	}
}

// jsonDiff returns the path of the first difference of two decoded JSON values.
func jsonDiff(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %v, got %v", path, want, got)
		}
		for k, v := range w {
			if d := jsonDiff(path+"."+k, v, g[k]); d != "" {
				return d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %v, got %v", path, want, got)
		}
		for i := range w {
			if d := jsonDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); d != "" {
				return d
			}
		}
	case float64:
		g, ok := got.(float64)
		if !ok || math.Abs(g-w) > 1e-9*math.Max(math.Abs(w), 1e-300) && g != w {
			return fmt.Sprintf("%s: want %v, got %v", path, want, got)
		}
	default:
		if want != got {
			return fmt.Sprintf("%s: want %v, got %v", path, want, got)
		}
	}
	return ""
}

// referenceRow is a row of testdata/reference.csv as pandas' to_parquet
// writes it: nullable numbers and strings, in the CSV's column order.
type referenceRow struct {
	Age    *float64 `parquet:"age,optional"`
	Income *float64 `parquet:"income,optional"`
	City   *string  `parquet:"city,optional"`
	Plan   *string  `parquet:"plan,optional"`
	Score  *float64 `parquet:"score,optional"`
}

// referenceParquet writes testdata/reference.csv as Parquet; empty values
// are nulls.
func referenceParquet(t *testing.T, data string) []byte {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"age", "income", "city", "plan", "score"}, recs[0])
	num := func(s string) *float64 {
		if s == "" {
			return nil
		}
		x, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err)
		return &x
	}
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	rows := make([]referenceRow, 0, len(recs)-1)
	for _, r := range recs[1:] {
		rows = append(rows, referenceRow{num(r[0]), num(r[1]), str(r[2]), str(r[3]), num(r[4])})
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[referenceRow](&buf)
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}
