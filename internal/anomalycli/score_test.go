package anomalycli

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/anomaly"
	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// series returns a CSV of n points at 5-minute steps in NAB's format, with
// a spike at row spike (0-based; -1 for none).
func series(n, spike int) string {
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	t0 := time.Date(2015, 7, 10, 14, 24, 0, 0, time.UTC)
	for i := range n {
		v := 10 + math.Sin(float64(i)/7) + 0.1*math.Sin(float64(i)*1.3)
		if i == spike {
			v += 50
		}
		fmt.Fprintf(&b, "%s,%g\n", t0.Add(time.Duration(i)*5*time.Minute).Format("2006-01-02 15:04:05"), v)
	}
	return b.String()
}

func score(t *testing.T, in, alg string) [][]string {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, Score(strings.NewReader(in), &out, alg))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Equal(t, "timestamp,value,anomaly_score", lines[0])
	var rows [][]string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Split(l, ","))
	}
	return rows
}

func TestScore(t *testing.T) {
	in := series(600, 400)
	for _, alg := range append(anomaly.Algorithms(), "") {
		t.Run(alg, func(t *testing.T) {
			rows := score(t, in, alg)
			inRows := strings.Split(strings.TrimSpace(in), "\n")[1:]
			require.Len(t, rows, len(inRows))
			for i, r := range rows {
				require.Len(t, r, 3)
				require.Equal(t, inRows[i], r[0]+","+r[1], "row %d copied verbatim", i)
			}
		})
	}
	rows := score(t, in, "")
	spike, err := strconv.ParseFloat(rows[400][2], 64)
	require.NoError(t, err)
	require.GreaterOrEqual(t, spike, anomaly.Threshold, "the spike: %v", rows[400])
}

// TestScoreCausal: row i's score depends on rows 0..i only, so scoring a
// prefix gives the same scores as scoring the whole series.
func TestScoreCausal(t *testing.T) {
	in := series(700, 500)
	lines := strings.SplitAfter(in, "\n")
	full := score(t, in, "")
	for _, n := range []int{200, 450, 501, 650} {
		prefix := score(t, strings.Join(lines[:n+1], ""), "")
		require.Equal(t, full[:n], prefix, "prefix of %d rows", n)
	}
}

func TestScoreTimestampFormats(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for name, format := range map[string]func(time.Time) string{
		"nab":     func(t time.Time) string { return t.Format("2006-01-02 15:04:05") },
		"rfc3339": func(t time.Time) string { return t.Format(time.RFC3339) },
		"unix":    func(t time.Time) string { return fmt.Sprint(t.Unix()) },
	} {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			for i := range 300 { // no header: the first row is data
				fmt.Fprintf(&b, "%s,%d\n", format(base.Add(time.Duration(i)*time.Minute)), i%3)
			}
			require.Len(t, score(t, b.String(), "mad"), 300)
		})
	}
	for _, s := range []string{"2015-07-10 14:24:00", "2015-07-10T14:24:00Z", "2015-07-10T16:24:00+02:00", "1436538240", "1436538240.0"} {
		got, err := ParseTimestamp(s)
		require.NoError(t, err, s)
		require.True(t, got.Equal(time.Date(2015, 7, 10, 14, 24, 0, 0, time.UTC)), "%s: %v", s, got)
	}
}

func TestScoreKeepsBadPoints(t *testing.T) {
	in := "timestamp,value\n" +
		"2015-07-10 14:24:00,1\n" +
		"2015-07-10 14:29:00,NaN\n" +
		"2015-07-10 14:29:00,\n" +
		"2015-07-10 14:19:00,3\n"
	rows := score(t, in, "")
	require.Equal(t, [][]string{
		{"2015-07-10 14:24:00", "1", "0"},
		{"2015-07-10 14:29:00", "NaN", "0"},
		{"2015-07-10 14:29:00", "", "0"},
		{"2015-07-10 14:19:00", "3", "0"},
	}, rows)
}

func TestScoreErrors(t *testing.T) {
	for _, tc := range []struct{ in, alg, err string }{
		{"timestamp,value\n2015-07-10 14:24:00,1\nyesterday,2\n", "", `line 3: invalid timestamp "yesterday": want "2006-01-02 15:04:05", RFC 3339 or Unix seconds`},
		{"timestamp,value\n2015-07-10 14:24:00,1\n2015-07-10 14:29:00,abc\n", "", `line 3: invalid value "abc": want a number`},
		{"timestamp,value\n2015-07-10 14:24:00\n", "", `line 2: want 2 fields (timestamp,value), got 1`},
		{"timestamp,value\n", "nope", `unknown anomaly algorithm "nope" (have [cusum ensemble mad seasonal])`},
		// A bare quote in the first field: the reader returns no field, and
		// asking for the first field's position used to panic.
		{"a\"b,1\n", "", `couldn't read CSV: parse error on line 1, column 2: bare " in non-quoted-field`},
		{"timestamp,value\n2015-07-10 14:24:00,\"1\n", "", `couldn't read CSV: parse error on line 2, column 24: extraneous or missing " in quoted-field`},
		// Nothing to score is an error, as for the exporter's profile and
		// drift, not a file holding a header alone.
		{"", "", "empty file"},
		{"\n\n", "", "empty file"},
		{"timestamp,value\n", "", "no rows after the header"},
		{"timestamp,value\n\n  \n", "", "no rows after the header"},
		{"  \n", "", "no rows"},
	} {
		err := Score(strings.NewReader(tc.in), &bytes.Buffer{}, tc.alg)
		require.EqualError(t, err, tc.err)
	}
}

func TestScoreFile(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
	require.NoError(t, os.WriteFile(in, []byte(series(300, -1)), 0o644))
	require.NoError(t, ScoreFile(in, out, "ensemble"))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, 301, strings.Count(string(b), "\n"))
	info, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), info.Mode().Perm())
	err = ScoreFile(filepath.Join(dir, "missing.csv"), out, "")
	require.ErrorContains(t, err, "couldn't open input")

	// An input with nothing to score fails, and leaves the output as it
	// was: no file, or the last complete one, never a header alone.
	header := filepath.Join(dir, "header.csv")
	require.NoError(t, os.WriteFile(header, []byte("timestamp,value\n"), 0o644))
	require.EqualError(t, ScoreFile(header, filepath.Join(dir, "new.csv"), ""), header+": no rows after the header")
	require.NoFileExists(t, filepath.Join(dir, "new.csv"))
	require.EqualError(t, ScoreFile(header, out, ""), header+": no rows after the header")
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, b, got)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 3, "no temporary file left: %v", entries)

	// A write that fails (a full disk) leaves no file where there was
	// none, the last one as it was, and no temporary file; the error says
	// the output failed, not the input.
	fresh := filepath.Join(dir, "fresh.csv")
	err = statefiletest.FailWrites(t, func() error { return ScoreFile(in, fresh, "") }, fresh)
	require.ErrorContains(t, err, "couldn't write output: ")
	require.ErrorContains(t, err, "no space left on device")
	err = statefiletest.FailWrites(t, func() error { return ScoreFile(in, out, "mad") }, out)
	require.ErrorContains(t, err, "couldn't write output: ")

	// Standard input is named so in errors.
	empty := filepath.Join(dir, "empty.csv")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	f, err := os.Open(empty)
	require.NoError(t, err)
	defer f.Close()
	stdin := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = stdin }()
	require.EqualError(t, ScoreFile("-", filepath.Join(dir, "new.csv"), ""), "stdin: empty file")
}
