package rules

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestShippedRules checks the default rules in this directory as alertd
// loads them, and runs their unit tests with alertd's runner (make checkrules
// runs them with promtool too).
func TestShippedRules(t *testing.T) {
	files, err := Files([]string{"*.rules.yml"})
	require.NoError(t, err)
	require.NotEmpty(t, files)
	n, errs := Check(files)
	require.Empty(t, errs)
	require.Positive(t, n)

	tests, err := filepath.Glob("*.test.yml")
	require.NoError(t, err)
	for _, f := range files {
		require.Contains(t, tests, strings.TrimSuffix(f, ".rules.yml")+".test.yml", "every rule file has its tests")
	}
	var out bytes.Buffer
	ok, err := RunTests(tests, TestOptions{Out: &out})
	require.NoError(t, err)
	require.True(t, ok, out.String())
}

// TestCheck checks that rule file errors name file and line, and that
// duplicate rules are found, as promtool check rules reports them.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.rules.yml")
	writeFile(t, bad, `groups:
  - name: g
    rules:
      - alert: A
        expr: up ==
      - alert: B
        expr: up == 0
        annotations:
          summary: "{{ $labels.job "
      - record: x
        expr: sum(up)
      - record: x
        expr: sum(up)
`)
	n, errs := Check([]string{bad, filepath.Join(dir, "missing.yml")})
	require.Equal(t, 4, n)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	require.Equal(t, []string{
		bad + `: 5:15: group "g", rule 1, "A": could not parse expression: 1:6: parse error: unexpected end of input`,
		bad + `: group "g", rule 2, "B": annotation "summary": template: __alert_B:1: unclosed action`,
		bad + `: group "g": duplicate rule "x" with labels {}`,
		filepath.Join(dir, "missing.yml") + ": open " + filepath.Join(dir, "missing.yml") + ": no such file or directory",
	}, msgs)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(s), 0o600))
}
