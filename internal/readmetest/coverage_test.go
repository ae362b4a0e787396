package readmetest

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// notLinted are the families, by name or by a prefix ending in "*", that
// the README's metrics tables name but no exposition `make checkmetrics`
// lints holds, and why none does. Each must still be named by the tables.
var notLinted = map[string]string{
	// client_golang's collectors of the Go runtime, the process and the
	// metrics handler, in both binaries: which families there are depends
	// on the Go version and the operating system, and client_golang names
	// them, not us.
	"go_*":       "client_golang's Go runtime collector",
	"process_*":  "client_golang's process collector",
	"promhttp_*": "client_golang's metrics handler",
	// alertd embeds Prometheus's rule manager, TSDB, scrape manager,
	// discovery and query engine, and Alertmanager's alert store,
	// dispatcher and notification log; their families keep those
	// projects' names and come and go with the versions in go.mod. Some
	// of them fail promtool's lint ("metric name should not include type
	// 'histogram'": prometheus_rule_evaluation_duration_histogram_seconds,
	// prometheus_rule_group_duration_histogram_seconds,
	// prometheus_engine_query_duration_histogram_seconds,
	// prometheus_tsdb_head_native_histogram_*), which is not ours to fix:
	// users' dashboards read them under these names.
	"prometheus_*":   "the embedded Prometheus parts' own families",
	"alertmanager_*": "the embedded Alertmanager parts' own families",
}

// Every family the README's metrics tables name is in an exposition under
// some testdata/ directory, which `make checkmetrics` lints with promtool,
// unless notLinted says why it can't be: a family a change adds is linted
// as soon as the README documents it, once a golden test shows it.
func TestMetricsCovered(t *testing.T) {
	root, err := moduleRoot()
	require.NoError(t, err)
	linted := lintedFamilies(t, root)
	require.NotEmpty(t, linted)

	var missing []string
	used := map[string]bool{}
	for _, name := range Load(t).TableMetrics() {
		if key, ok := allowed(name); ok {
			used[key] = true
			continue
		}
		if !covered(name, linted) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	require.Empty(t, slices.Compact(missing), "README.md's metrics tables name these families, but no exposition under testdata/ holds them: "+
		"make a golden test expose them (internal/exporter's TestExpositionFullGolden, internal/alertd's TestExpositionGolden), "+
		"or say in notLinted why none can")
	for key := range notLinted {
		require.True(t, used[key], "notLinted names %s, which no metrics table of README.md names", key)
	}
}

// lintedFamilies returns the names of the families in the expositions
// `make checkmetrics` lints: every .prom file under a testdata/ directory
// of the module.
func lintedFamilies(t *testing.T, root string) map[string]bool {
	t.Helper()
	families := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || filepath.Ext(path) != ".prom" || !slices.Contains(strings.Split(filepath.ToSlash(path), "/"), "testdata") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, name := range MetricFamilies(t, string(b)) {
			families[name] = true
		}
		return nil
	})
	require.NoError(t, err)
	return families
}

// allowed returns the notLinted entry that name, a family or a `prefix*`,
// falls under.
func allowed(name string) (string, bool) {
	for key := range notLinted {
		if strings.HasPrefix(strings.TrimSuffix(name, "*"), strings.TrimSuffix(key, "*")) && (strings.HasSuffix(key, "*") || key == name) {
			return key, true
		}
	}
	return "", false
}

// covered reports whether linted holds the family name, or for a
// `prefix*` some family that starts with prefix.
func covered(name string, linted map[string]bool) bool {
	prefix, wildcard := strings.CutSuffix(name, "*")
	if !wildcard {
		return linted[name]
	}
	for f := range linted {
		if strings.HasPrefix(f, prefix) {
			return true
		}
	}
	return false
}
