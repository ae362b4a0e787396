package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/internal/readmetest"
)

// buildBinary compiles alertd once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "alertd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// exitCode runs the binary and returns its exit code and output.
func exitCode(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	require.NoError(t, err, string(out))
	return 0, string(out)
}

// The commands users' CI jobs call: check-config, --config.check and test
// rules, with their exit codes and messages.
func TestCommands(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("route:\n  receiver: x\n  bogus: 1\nreceivers: [{name: x}]\n"), 0o600))
	badRules := filepath.Join(dir, "bad-rules.yml")
	require.NoError(t, os.WriteFile(badRules, []byte("rule_files: [r.yml]\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r.yml"), []byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n"), 0o600))

	code, out := exitCode(t, bin, "check-config", "../../examples/alertd.yml")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "SUCCESS: 6 rule files")

	code, out = exitCode(t, bin, "--config.check", "--config.file=../../examples/alertd.yml")
	require.Equal(t, 0, code, out)

	code, out = exitCode(t, bin, "check-config", bad)
	require.Equal(t, 1, code)
	require.Contains(t, out, bad+`:3: unknown field "bogus"`)
	// So is a value its type refuses, with its key.
	require.NoError(t, os.WriteFile(bad, []byte("datasource:\n  url: http://prometheus:9090\n  timeout: 5x\nintake:\n  resolve_timeout: 5x\n"), 0o600))
	code, out = exitCode(t, bin, "check-config", bad)
	require.Equal(t, 1, code)
	require.Contains(t, out, bad+`:3: datasource.timeout: unknown unit "x" in duration "5x"`)

	code, out = exitCode(t, bin, "check-config", badRules)
	require.Equal(t, 1, code)
	require.Contains(t, out, filepath.Join(dir, "r.yml")+`: 5:15: group "g", rule 1, "A": could not parse expression`)

	tests, err := filepath.Glob("../../rules/*.test.yml")
	require.NoError(t, err)
	code, out = exitCode(t, bin, append([]string{"test", "rules"}, tests...)...)
	require.Equal(t, 0, code, out)
	require.Equal(t, len(tests), strings.Count(out, "SUCCESS"), out)

	code, out = exitCode(t, bin, "test", "rules", "../../rules/testdata/unittest/fail_labels.yml")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "FAILED")

	code, out = exitCode(t, bin, "test", "policy", "../../internal/alertd/testdata/policy/pass.yml", "../../examples/alertd.policy.yml")
	require.Equal(t, 0, code, out)
	require.Equal(t, 2, strings.Count(out, "SUCCESS"), out)
	code, out = exitCode(t, bin, "test", "policy", "../../internal/alertd/testdata/policy/fail.yml")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "got an unexpected firing")

	var csv strings.Builder
	csv.WriteString("timestamp,value\n")
	for i := range 300 {
		v := 10 + i%3
		if i == 250 {
			v = 100
		}
		fmt.Fprintf(&csv, "2015-07-10 %02d:%02d:00,%d\n", i/60, i%60, v)
	}
	in := filepath.Join(dir, "series.csv")
	require.NoError(t, os.WriteFile(in, []byte(csv.String()), 0o600))
	scored := filepath.Join(dir, "scored.csv")
	code, out = exitCode(t, bin, "anomaly", "score", "--input", in, "--output", scored)
	require.Equal(t, 0, code, out)
	b, err := os.ReadFile(scored)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 301, "one row per input row")
	require.Equal(t, "timestamp,value,anomaly_score", lines[0])
	require.True(t, strings.HasPrefix(lines[251], "2015-07-10 04:10:00,100,"), lines[251])

	// "-" as a word of its own reads stdin and writes stdout.
	cmd := exec.Command(bin, "anomaly", "score", "--input", "-", "--output", "-")
	cmd.Stdin = strings.NewReader(csv.String())
	piped, err := cmd.Output()
	require.NoError(t, err)
	require.Equal(t, string(b), string(piped))

	code, out = exitCode(t, bin, "anomaly", "score", "--input", in, "--output", scored, "--algorithm", "nope")
	require.Equal(t, 2, code, out)

	// A header without rows fails, and leaves the last scores in place.
	header := filepath.Join(dir, "header.csv")
	require.NoError(t, os.WriteFile(header, []byte("timestamp,value\n"), 0o600))
	code, out = exitCode(t, bin, "anomaly", "score", "--input", header, "--output", scored)
	require.Equal(t, 1, code, out)
	require.Equal(t, "alertd: error: "+header+": no rows after the header\n", out)
	after, err := os.ReadFile(scored)
	require.NoError(t, err)
	require.Equal(t, string(b), string(after))
}

// The binary starts on its defaults (embedded engine, no rules), serves its
// API and metrics, and exits 0 on SIGTERM.
func TestBinaryLifecycle(t *testing.T) {
	bin := buildBinary(t)
	web := prometheustest.FreeAddr(t)
	logs := &prometheustest.SyncBuffer{}
	cmd := exec.Command(bin, "--web.listen-address="+web, "--storage.path="+t.TempDir())
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill() //nolint:errcheck

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + web + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "alertd did not become ready")

	get := func(path string) string {
		resp, err := http.Get("http://" + web + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		return string(b)
	}
	metrics := get("/metrics")
	require.Contains(t, metrics, "alertd_build_info{")
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		require.NotContains(t, metrics, "go_gc_gomemlimit_bytes 9.223372036854776e+18", "--auto-gomemlimit sets a limit")
	}
	readmetest.Load(t).RequireMetrics(t, metrics)
	require.JSONEq(t, `{"status":"success","data":{"alerts":[]}}`, get("/api/v1/alerts"))
	require.JSONEq(t, `{"status":"success","data":{"groups":[]}}`, get("/api/v1/rules"))
	require.JSONEq(t, `{"status":"success","data":{"resultType":"scalar","result":[1000,"1"]}}`, get("/api/v1/query?query=1&time=1000"))

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), logs.String())
}

// --silences.retention, --maintenance.retention and
// --suppressions.retention take a positive duration, in Prometheus's
// units (5d as well as 120h); anything else stops start-up with exit
// status 2 and says why, before anything is written under --storage.path.
func TestRetentionFlags(t *testing.T) {
	bin := buildBinary(t)
	for _, flag := range []string{"silences.retention", "maintenance.retention", "suppressions.retention"} {
		for _, v := range []string{"0s", "0", "-1h", "soon"} {
			storage := filepath.Join(t.TempDir(), "data")
			code, out := exitCode(t, bin, "--"+flag+"="+v, "--web.listen-address=127.0.0.1:0", "--storage.path="+storage)
			require.Equal(t, 2, code, out)
			require.Contains(t, out, `msg="Invalid --`+flag+`: want a positive duration such as 120h" value=`+v, out)
			require.NoDirExists(t, storage)
		}
	}

	web := prometheustest.FreeAddr(t)
	logs := &prometheustest.SyncBuffer{}
	cmd := exec.Command(bin, "--silences.retention=5d", "--maintenance.retention=5d", "--suppressions.retention=36h",
		"--web.listen-address="+web, "--storage.path="+t.TempDir())
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill() //nolint:errcheck
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + web + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "alertd did not start with the retentions in days and hours: %s", logs.String())
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), logs.String())
}

// alertd replay on a TSDB made by promtool from OpenMetrics, as users
// backfill history: the text report, JSON, --fail-on-more-pages's exit
// status, acknowledgements and silences (a file, stdin).
func TestReplayCommand(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var om strings.Builder
	om.WriteString("# TYPE errors gauge\n")
	for i := range 180 {
		v := 0
		if (i >= 60 && i < 80) || (i >= 120 && i < 122) {
			v = 5
		}
		fmt.Fprintf(&om, "errors{model=\"a\"} %d %d\n", v, start.Add(time.Duration(i)*time.Minute).Unix())
	}
	om.WriteString("# EOF\n")
	omFile := filepath.Join(dir, "history.om")
	require.NoError(t, os.WriteFile(omFile, []byte(om.String()), 0o600))
	tsdbDir := filepath.Join(dir, "tsdb")
	out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", omFile, tsdbDir).CombinedOutput()
	require.NoError(t, err, string(out))

	rules := "groups:\n  - name: g\n    rules:\n      - alert: ErrorsHigh\n        expr: errors > 1\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r.yml"), []byte(rules), 0o600))
	base := "global:\n  evaluation_interval: 1m\nrule_files: [r.yml]\nroute:\n  receiver: oncall\nreceivers: [{name: oncall}]\n"
	a, b := filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yml")
	require.NoError(t, os.WriteFile(a, []byte(base), 0o600))
	require.NoError(t, os.WriteFile(b, []byte(base+"suppression:\n  min_firing_duration: 5m\n"), 0o600))
	from, to := start.Format(time.RFC3339), strconv.FormatInt(start.Add(179*time.Minute).Unix(), 10)

	code, out2 := exitCode(t, bin, "replay", "--config", a, "--compare", b, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir)
	require.Equal(t, 0, code, out2)
	rows := map[string]string{}
	for _, line := range strings.Split(out2, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			rows[strings.Join(f[:len(f)-2], " ")] = strings.Join(f[len(f)-2:], " ")
		}
	}
	require.Equal(t, "2 1", rows["pages"], out2)
	require.Equal(t, "0 1", rows["by hold"], out2)
	require.Contains(t, out2, "1 firings changed outcome:")
	require.Contains(t, out2, "paged  suppressed (hold)")
	require.NotContains(t, out2, "WAL", "no storage noise in the report")
	code, out2 = exitCode(t, bin, "replay", "--config", b, "--compare", a, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--fail-on-more-pages", "--output", "json")
	require.Equal(t, 3, code, out2)
	require.Contains(t, out2, `"outcome": "suppressed"`)
	require.Contains(t, out2, "pages 2 times, more than")

	// An escalation policy pages no more through the route, but its
	// chain notifies more.
	c := filepath.Join(dir, "c.yml")
	require.NoError(t, os.WriteFile(c, []byte(base+"escalation_policies:\n  - name: p\n    steps: [{notify: [oncall]}, {wait: 10m}, {notify: [oncall]}]\n"), 0o600))
	code, out2 = exitCode(t, bin, "replay", "--config", a, "--compare", c, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--fail-on-more-pages")
	require.Equal(t, 0, code, out2)
	code, out2 = exitCode(t, bin, "replay", "--config", a, "--compare", c, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--fail-on-more-escalations")
	require.Equal(t, 3, code, out2)
	require.Contains(t, out2, "escalation policies notify 3 times, more than")

	// Acknowledgements from a file and from the ledger stop c's chains
	// before level 2; the same apply to both configurations, and a has
	// no policy to acknowledge.
	acks := filepath.Join(dir, "acks.yml")
	require.NoError(t, os.WriteFile(acks, []byte("- {at: 65m, labels: {model: a}, by: alice}\n- {at: 150m, by: bob}\n"), 0o600))
	storage := filepath.Join(dir, "storage")
	require.NoError(t, os.MkdirAll(filepath.Join(storage, "ledger"), 0o755))
	fp := model.LabelSet{"alertname": "ErrorsHigh", "model": "a"}.Fingerprint().String()
	ledger := fmt.Sprintf(`{"seq":1,"time":%q,"event":"acknowledged","fingerprint":%q,"labels":{"alertname":"ErrorsHigh","model":"a"},"by":"carol"}`+"\n",
		start.Add(121*time.Minute).Format(time.RFC3339), fp)
	require.NoError(t, os.WriteFile(filepath.Join(storage, "ledger", "00000000000000000001.jsonl"), []byte(ledger), 0o600))
	code, out2 = exitCode(t, bin, "replay", "--config", a, "--compare", c, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir,
		"--storage.path", storage, "--acknowledgements", acks, "--acknowledgements.from-ledger")
	require.Equal(t, 0, code, out2)
	rows = map[string]string{}
	for _, line := range strings.Split(out2, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			rows[strings.Join(f[:len(f)-2], " ")] = strings.Join(f[len(f)-2:], " ")
		}
	}
	require.Equal(t, "0 2", rows["escalations"], out2)
	require.Equal(t, "0 2", rows["acknowledgements applied"], out2)
	require.Equal(t, "3 1", rows["acknowledgements unmatched"], out2)
	code, out2 = exitCode(t, bin, "replay", "--config", c, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--acknowledgements", acks, "--output", "json")
	require.Equal(t, 0, code, out2)
	require.Contains(t, out2, `"acknowledgements_applied": 1,`)
	require.Contains(t, out2, `"acknowledgements_unmatched": 1`)
	code, out2 = exitCode(t, bin, "replay", "--config", c, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--acknowledgements.from-ledger", "--storage.path", dir)
	require.Equal(t, 1, code, out2)
	require.Contains(t, out2, "couldn't read acknowledgements from the ledger (--storage.path=")

	// Silences created through the API, as GET /api/v2/silences answers
	// them: one over the blip at 120 suppresses it, one matches nothing;
	// from a file, and from stdin.
	silence := func(id, model string, from, to int) string {
		return fmt.Sprintf(`{"id":%q,"status":{"state":"expired"},"updatedAt":%q,"comment":"","createdBy":"alice","startsAt":%[2]q,"endsAt":%q,"matchers":[{"isEqual":true,"isRegex":false,"name":"model","value":%q}]}`,
			id, start.Add(time.Duration(from)*time.Minute).Format(time.RFC3339), start.Add(time.Duration(to)*time.Minute).Format(time.RFC3339), model)
	}
	sils := filepath.Join(dir, "silences.json")
	require.NoError(t, os.WriteFile(sils, []byte("["+silence("s-blip", "a", 110, 130)+","+silence("s-none", "z", 0, 10)+"]\n"), 0o600))
	code, out2 = exitCode(t, bin, "replay", "--config", a, "--compare", b, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--silences", sils)
	require.Equal(t, 0, code, out2)
	rows = map[string]string{}
	for _, line := range strings.Split(out2, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			rows[strings.Join(f[:len(f)-2], " ")] = strings.Join(f[len(f)-2:], " ")
		}
	}
	require.Equal(t, "1 1", rows["pages"], out2)
	require.Equal(t, "1 1", rows["by silence"], out2, "in b, the silence before the hold")
	require.Equal(t, "1 1", rows["silences applied"], out2)
	require.Equal(t, "1 1", rows["silences unmatched"], out2)
	cmd := exec.Command(bin, "replay", "--config", a, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--silences", "-", "--output", "json")
	cmd.Stdin = strings.NewReader("[" + silence("s-blip", "a", 110, 130) + "]")
	js, err := cmd.CombinedOutput()
	require.NoError(t, err, string(js))
	require.Contains(t, string(js), `"silences_applied": 1,`)
	require.Contains(t, string(js), `"reason": "silenced by s-blip until 2026-03-02T02:10:00Z, created by alice"`)
	require.NoError(t, os.WriteFile(sils, []byte(`[{"id":"s-bad","startsAt":"2026-03-02T00:00:00Z","endsAt":"2026-03-02T01:00:00Z","matchers":[{"name":"model","value":"(","isRegex":true}]}]`), 0o600))
	code, out2 = exitCode(t, bin, "replay", "--config", a, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--silences", sils)
	require.Equal(t, 1, code, out2)
	require.Contains(t, out2, `alertd: error: couldn't load silences (--silences="`+sils+`"): silence s-bad: invalid matcher`)
	code, out2 = exitCode(t, bin, "replay", "--config", a, "--from", from, "--to", to, "--storage.tsdb.path", tsdbDir, "--silences", filepath.Join(dir, "nope.json"))
	require.Equal(t, 1, code, out2)
	require.Contains(t, out2, "couldn't load silences (--silences=")
	require.Contains(t, out2, "no such file or directory")

	code, out2 = exitCode(t, bin, "replay", "--config", a, "--from", "yesterday", "--storage.tsdb.path", tsdbDir)
	require.Equal(t, 1, code)
	require.Contains(t, out2, `bad --from: "yesterday" is neither RFC 3339 nor Unix seconds`)
}

// README.md documents every flag and command of alertd: users' scripts
// and CI jobs call them by these names.
func TestREADMEDocumentsFlags(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--help-long").CombinedOutput()
	require.NoError(t, err, string(out))
	readmetest.Load(t).RequireFlagsAndCommands(t, "alertd", string(out))
	readmetest.Load(t).RequireFlagDefaults(t, "alertd", string(out))
}
