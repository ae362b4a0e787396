package reliability

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// build compiles the named commands into dir.
func build(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, n), "github.com/modelmon/modelmon/cmd/"+n).CombinedOutput()
		require.NoError(t, err, string(out))
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// run starts a binary until the test ends and waits for url to answer.
func run(t *testing.T, url, bin string, args ...string) *exec.Cmd {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "%s did not come up", bin)
	return cmd
}

// badCase is one bad input sent to one endpoint.
type badCase struct {
	endpoint, input string
	method, path    string
	contentType     string
	body            []byte
}

func post(endpoint, input, path, body string) badCase {
	return badCase{endpoint: endpoint, input: input, method: http.MethodPost, path: path, contentType: "application/json", body: []byte(body)}
}

// bigJSON is a JSON array of n bytes or more.
func bigJSON(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for b.Len() < n {
		b.WriteString(`{"model":"fraud","features":{"amount":1}},`)
	}
	b.WriteString(`{"model":"fraud"}]`)
	return b.String()
}

// Bad input, tried per endpoint on the real binaries: every answer is a
// clear 4xx (or, for the proxy, the model's own answer: monitoring never
// fails a prediction), no process crashes, and what was refused is
// counted. The table is RELIABILITY.md's "Bad input, per endpoint"
// (UPDATE_RELIABILITY=1 rewrites it).
func TestBadInputPerEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binaries")
	}
	bin := t.TempDir()
	build(t, bin, "exporter", "alertd")

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"predictions":[0.1]}`))
	}))
	t.Cleanup(upstream.Close)
	proxy, web := freeAddr(t), freeAddr(t)
	run(t, "http://"+web+"/-/ready", filepath.Join(bin, "exporter"),
		"--proxy.upstream="+upstream.URL, "--proxy.listen-address="+proxy, "--web.listen-address="+web,
		"--labels.enabled", "--push.max-body-size=1MB", "--log.level=warn")
	adir := t.TempDir()
	alertd := freeAddr(t)
	require.NoError(t, os.WriteFile(filepath.Join(adir, "alertd.yml"), []byte("route: {receiver: none}\nreceivers: [{name: none}]\n"), 0o600))
	run(t, "http://"+alertd+"/-/ready", filepath.Join(bin, "alertd"), "--config.file="+filepath.Join(adir, "alertd.yml"),
		"--web.listen-address="+alertd, "--storage.path="+filepath.Join(adir, "data"), "--log.level=warn")

	p, e, a := "http://"+proxy, "http://"+web, "http://"+alertd
	predict := "/v1/models/fraud:predict"
	cases := []badCase{
		post("proxy "+predict, "malformed JSON", p+predict, `{"instances": [[1, 2,`),
		post("proxy "+predict, "NaN and Infinity", p+predict, `{"instances": [[NaN, Infinity, -Infinity]]}`),
		post("proxy "+predict, "10,000 distinct feature names", p+predict, func() string {
			var b strings.Builder
			b.WriteString(`{"instances":[{`)
			for i := range 10000 {
				if i > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, `"f%d":%d`, i, i)
			}
			b.WriteString(`}]}`)
			return b.String()
		}()),
		{endpoint: "proxy " + predict, input: "not JSON (text/plain)", method: http.MethodPost, path: p + predict, contentType: "text/plain", body: []byte("hello")},
		post("proxy "+predict, "20 MB body", p+predict, bigJSON(20<<20)),
		post("POST /v1/observations", "malformed JSON", e+"/v1/observations", `[{"model":`),
		post("POST /v1/observations", "unknown field", e+"/v1/observations", `[{"model":"fraud","bogus":1}]`),
		post("POST /v1/observations", "non-finite latency", e+"/v1/observations", `[{"model":"fraud","latency":"NaN"}]`),
		post("POST /v1/observations", "2 MB body (limit 1 MB)", e+"/v1/observations", bigJSON(2<<20)),
		{endpoint: "POST /v1/observations", input: "GET", method: http.MethodGet, path: e + "/v1/observations"},
		post("POST /v1/labels", "malformed JSON", e+"/v1/labels", `[{"id":`),
		post("POST /v1/labels", "record without id", e+"/v1/labels", `[{"label":1}]`),
		post("POST /api/v2/alerts", "malformed JSON", a+"/api/v2/alerts", `[{"labels":`),
		post("POST /api/v2/alerts", "alert without labels", a+"/api/v2/alerts", `[{"annotations":{"a":"b"}}]`),
		post("POST /api/v2/alerts", "20 MB body", a+"/api/v2/alerts", bigJSON(20<<20)),
		post("POST /api/v1/webhook/alertmanager", "malformed JSON", a+"/api/v1/webhook/alertmanager", `{"version":"4","alerts":[`),
		post("POST /api/v1/alerts/{fp}/feedback", "malformed fingerprint", a+"/api/v1/alerts/xyz/feedback", `{"verdict":"false_positive"}`),
		post("POST /api/v1/alerts/{fp}/feedback", "unknown alert", a+"/api/v1/alerts/0123456789abcdef/feedback", `{"verdict":"false_positive"}`),
		post("POST /api/v1/alerts/{fp}/acknowledge", "unknown alert", a+"/api/v1/alerts/0123456789abcdef/acknowledge", `{}`),
		post("POST /api/v1/silences", "malformed matcher", a+"/api/v1/silences", `{"matchers":["model=~("],"duration":"1h"}`),
		post("POST /api/v1/silences", "matches every alert", a+"/api/v1/silences", `{"matchers":["model=~\".*\""],"duration":"1h"}`),
		post("POST /api/v1/maintenance_windows", "bad time interval", a+"/api/v1/maintenance_windows", `{"name":"w","matchers":["model=\"a\""],"time_intervals":[{"times":[{"start_time":"25:00","end_time":"26:00"}]}]}`),
		post("POST /api/v1/deployments", "no model", a+"/api/v1/deployments", `{"version":"2"}`),
		post("POST /api/v1/suppressions/preview", "malformed matcher", a+"/api/v1/suppressions/preview", `{"matchers":["x=~("]}`),
		post("POST /api/v1/incidents/{id}/acknowledge", "unknown incident", a+"/api/v1/incidents/nope/acknowledge", `{}`),
		post("POST /api/v1/actions/requests/{id}/approve", "unknown request", a+"/api/v1/actions/requests/nope/approve", `{}`),
		post("POST /api/v1/outbox/dead_letters/{key}/redrive", "unknown key", a+"/api/v1/outbox/dead_letters/nope/redrive", ``),
		{endpoint: "POST /api/v1/slack/interactions", input: "unsigned", method: http.MethodPost, path: a + "/api/v1/slack/interactions", contentType: "application/x-www-form-urlencoded", body: []byte("payload=%7B%7D")},
		{endpoint: "GET /api/v1/query", input: "bad PromQL", method: http.MethodGet, path: a + "/api/v1/query?query=sum(", contentType: ""},
	}

	var table strings.Builder
	table.WriteString("| endpoint | bad input | answer |\n|---|---|---|\n")
	client := &http.Client{Timeout: 60 * time.Second}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, c.path, bytes.NewReader(c.body))
		require.NoError(t, err)
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		resp, err := client.Do(req)
		require.NoError(t, err, "%s: %s", c.endpoint, c.input)
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		msg := strings.TrimSpace(string(b))
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		if strings.HasPrefix(c.endpoint, "proxy") {
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s: monitoring must not fail a prediction: %s", c.endpoint, c.input, msg)
		} else {
			require.GreaterOrEqual(t, resp.StatusCode, 400, "%s: %s: %s", c.endpoint, c.input, msg)
			require.Less(t, resp.StatusCode, 500, "%s: %s: a client's error is no server error: %s", c.endpoint, c.input, msg)
		}
		fmt.Fprintf(&table, "| `%s` | %s | %d %s |\n", c.endpoint, c.input, resp.StatusCode, http.StatusText(resp.StatusCode))
	}

	// Both processes are still up and counted what they refused.
	for _, u := range []string{e + "/-/healthy", a + "/-/healthy"} {
		resp, err := http.Get(u)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	exp := scrape(t, e+"/metrics")
	require.Positive(t, sum(exp, "modelmon_payload_errors_total"), "the proxy counts payloads it could not parse")
	require.Positive(t, sum(exp, "modelmon_observations_rejected_total"))
	require.Positive(t, sum(exp, "modelmon_labels_rejected_total"))
	alm := scrape(t, a+"/metrics")
	require.Positive(t, sum(alm, "alertd_intake_alerts_invalid_total"))
	fmt.Fprintf(&table, "\n%d bad inputs on %d endpoints; both processes stayed up, and the refusals are counted (`modelmon_payload_errors_total`, `modelmon_observations_rejected_total`, `modelmon_labels_rejected_total`, `alertd_intake_alerts_invalid_total`).\n",
		len(cases), endpoints(cases))
	golden(t, "badinput", table.String())
}

func endpoints(cs []badCase) int {
	seen := map[string]bool{}
	for _, c := range cs {
		seen[c.endpoint] = true
	}
	return len(seen)
}

// scrape returns a /metrics page.
func scrape(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// sum adds the samples of a metric on a text exposition.
func sum(page, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	var total float64
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		total += v
	}
	return total
}

// golden checks that RELIABILITY.md holds text between the markers of
// section; UPDATE_RELIABILITY=1 writes it there.
func golden(t *testing.T, section, text string) {
	t.Helper()
	const file = "../RELIABILITY.md"
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	begin, end := "<!-- "+section+": begin -->\n", "<!-- "+section+": end -->"
	i, j := bytes.Index(b, []byte(begin)), bytes.Index(b, []byte(end))
	require.True(t, i >= 0 && j > i, "%s has no %s markers", file, section)
	got := string(b[i+len(begin) : j])
	if os.Getenv("UPDATE_RELIABILITY") == "1" {
		out := append([]byte{}, b[:i+len(begin)]...)
		out = append(out, text...)
		out = append(out, b[j:]...)
		require.NoError(t, os.WriteFile(file, out, 0o644))
		return
	}
	require.Equal(t, text, got, "RELIABILITY.md is out of date: UPDATE_RELIABILITY=1 go test ./reliability/")
}
