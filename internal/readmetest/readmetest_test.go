package readmetest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const help = `usage: alertd [<flags>] <command> [<args> ...]

Flags:
  -h, --[no-]help          Show context-sensitive help (also try --help-long and
                           --help-man).
      --log.level=info     Only log messages with the given severity or above.
      --[no-]version       Show application version.

Commands:
help [<command>...]
    Show help.

serve* [<flags>]
    Run alertd.

    --web.listen-address=:9099 ...
                           Addresses on which to expose metrics and the API.
    --[no-]web.enable-lifecycle
                           Enable shutdown via HTTP.

test rules [<flags>] <test-rule-file>...
    Run rule unit tests.

    --run=RUN ...  Only test groups whose names match.

anomaly score --input=INPUT --output=OUTPUT [<flags>]
    Score a series.
`

func TestFlagsAndCommands(t *testing.T) {
	// Flags come from the indented lines, not from the usage lines; kingpin's
	// own are left out.
	require.Equal(t, []string{"log.level", "run", "web.enable-lifecycle", "web.listen-address"}, Flags(help))
	require.Equal(t, []string{"serve", "test rules", "anomaly score"}, Commands(help))
}

func TestNames(t *testing.T) {
	d := Parse("Run `alertd test rules FILE`, set `--proxy.timeout=5s` or\n" +
		"--[no-]web.enable-lifecycle; see --outbox.max-backoff.\n" +
		"| `modelmon_requests_total` | counter |\n" +
		"| `prometheus_tsdb_*`, `go_*` | | |\n")

	require.True(t, d.NamesFlag("proxy.timeout"))
	require.True(t, d.NamesFlag("web.enable-lifecycle"), "a boolean as kingpin writes it")
	require.True(t, d.NamesFlag("outbox.max-backoff"), "at the end of a sentence")
	require.False(t, d.NamesFlag("proxy"), "a prefix of a flag")
	require.False(t, d.NamesFlag("outbox.max"), "a prefix of a flag")
	require.False(t, d.NamesFlag("timeout"))

	require.True(t, d.NamesCommand("alertd", "test rules"))
	require.False(t, d.NamesCommand("exporter", "test rules"))

	require.True(t, d.NamesMetric("modelmon_requests_total"))
	require.True(t, d.NamesMetric("prometheus_tsdb_head_series"))
	require.True(t, d.NamesMetric("go_goroutines"))
	require.False(t, d.NamesMetric("modelmon_requests"), "a prefix of a name")
	require.False(t, d.NamesMetric("prometheus_engine_queries"))
}

func TestMetricFamilies(t *testing.T) {
	require.Equal(t, []string{"a_total", "b_seconds"}, MetricFamilies(t, `# TYPE b_seconds histogram
b_seconds_bucket{le="+Inf"} 1
b_seconds_sum 1
b_seconds_count 1
# TYPE a_total counter
a_total 3
`))
}

func TestTableMetrics(t *testing.T) {
	d := Parse("See `modelmon_not_in_a_table`.\n\n" +
		"| metric | type | labels | meaning |\n" +
		"|---|---|---|---|\n" +
		"| `a_total`, `b_seconds` | counter | `model` | like `c_total` |\n" +
		"| `go_*` | | | |\n" +
		"\n" +
		"| flag | default |\n" +
		"|---|---|\n" +
		"| `--x` | `d_total` |\n" +
		"\n" +
		"| metric | type |\n" +
		"|---|---|\n" +
		"| `e_info` | gauge |\n")
	require.Equal(t, []string{"a_total", "b_seconds", "go_*", "e_info"}, d.TableMetrics(),
		"first columns of the metrics tables only")
}

func TestFlagDefaults(t *testing.T) {
	d := Parse("## The exporter\n\n" +
		"| flag | default | meaning |\n" +
		"|---|---|---|\n" +
		"| `--proxy.timeout` | `1m` | |\n" +
		"| `--log.level`, `--log.format` | `info`, `logfmt` | |\n" +
		"| `--a`, `--b` | `0s` | one for both |\n" +
		"| `--config.file` | (none) | in words: not checked |\n" +
		"| `--web.external-url` | `http://<hostname>:<port>/` | computed: not checked |\n" +
		"\n## alertd: the alert engine\n\n" +
		"| flag | default | meaning |\n" +
		"|---|---|---|\n" +
		"| `--outbox.retention` | `7d` | |\n")
	require.Equal(t, []flagDefault{
		{"exporter", "proxy.timeout", "1m", 5},
		{"exporter", "log.level", "info", 6},
		{"exporter", "log.format", "logfmt", 6},
		{"exporter", "a", "0s", 7},
		{"exporter", "b", "0s", 7},
		{"alertd", "outbox.retention", "7d", 15},
	}, d.flagDefaults())

	require.True(t, sameDefault("1m", "1m0s"))
	require.True(t, sameDefault("7d", "1w"))
	require.True(t, sameDefault("268435456", "256MiB"))
	require.True(t, sameDefault("5m,1h,1d", "5m,1h,1d"))
	require.False(t, sameDefault("100", "200"))
	require.False(t, sameDefault("30s", "1m0s"))

	d.RequireFlagDefaults(t, "alertd", "  --outbox.retention=\"1w\"  How long.\n  --bins=200  Bins.\n")
}
