package alertd

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// The incidents page and its assets are served from the embedded files,
// with their content types and security headers, at the root and under a
// route prefix; the landing page links to it.
func TestIncidentsPage(t *testing.T) {
	t.Parallel()
	js, err := fs.ReadFile(webFS, "web/incidents.js")
	require.NoError(t, err)
	css, err := fs.ReadFile(webFS, "web/incidents.css")
	require.NoError(t, err)
	html, err := fs.ReadFile(webFS, "web/incidents.html")
	require.NoError(t, err)

	for _, prefix := range []string{"", "/alertd/"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			t.Parallel()
			a := startAlertd(t, intakeConfig, nil, func(o *Options) { o.RoutePrefix = prefix })
			base := a.URL + strings.TrimRight(prefix, "/")
			for _, tc := range []struct {
				path, contentType string
				body              []byte
			}{
				{"/incidents", "text/html; charset=utf-8", html},
				{"/static/incidents.js", "text/javascript; charset=utf-8", js},
				{"/static/incidents.css", "text/css; charset=utf-8", css},
			} {
				resp, err := http.Get(base + tc.path)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode, tc.path)
				require.Equal(t, tc.contentType, resp.Header.Get("Content-Type"), tc.path)
				require.Equal(t, webCSP, resp.Header.Get("Content-Security-Policy"), tc.path)
				require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), tc.path)
				code, body := get(t, base+tc.path)
				require.Equal(t, http.StatusOK, code)
				require.Equal(t, string(tc.body), body, tc.path)
			}
			for _, path := range []string{"/static/", "/static/nope.js", "/incidents/"} {
				code, _ := get(t, base+path)
				require.Equal(t, http.StatusNotFound, code, path)
			}
			code, body := get(t, base+"/")
			require.Equal(t, http.StatusOK, code)
			require.Contains(t, body, `incidents">Incidents page</a>`)
		})
	}
}

// The page's own files hold the two promises it makes: every URL is
// relative (so a route prefix needs no change), and data never goes in as
// HTML.
func TestIncidentsPageSource(t *testing.T) {
	t.Parallel()
	absolute := regexp.MustCompile(`(?:href|src|action)="/|["'\x60]/(?:api|static|incidents|-/)|https?://`)
	asHTML := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`)
	for _, name := range []string{"web/incidents.html", "web/incidents.js", "web/incidents.css"} {
		b, err := fs.ReadFile(webFS, name)
		require.NoError(t, err)
		require.Empty(t, absolute.FindAllString(string(b), -1), "%s: absolute URLs break --web.route-prefix", name)
		require.Empty(t, asHTML.FindAllString(string(b), -1), "%s: data must go in as text", name)
	}
}

// chromium returns the path of Debian's chromium, skipping the test when
// it is missing, or failing it under CI, as prometheustest does for
// Prometheus.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium not found on PATH (apt-get install chromium)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + ": CI must install it")
	}
	t.Skip(msg + "; skipping")
	return ""
}

// browser starts a headless chromium for the test and returns a tab's
// context, cancelled (and the browser stopped) when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.DisableGPU,
		// Containers and CI run as root, where chromium's sandbox cannot start.
		chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000),
		chromedp.Flag("lang", "en-US"),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
	})
	// Start the browser now, so a broken install fails here.
	require.NoError(t, chromedp.Do(bctx), "couldn't start chromium")
	return bctx
}

// An operator opens the incidents page under a route prefix, sees the
// incident an alert opened with its priority, category and explanation,
// acknowledges it and gives feedback; the page and the API show both.
// With UPDATE_SCREENSHOT=1 it saves the page as docs/alertd-incidents.png.
func TestIncidentsPageBrowser(t *testing.T) {
	t.Parallel()
	h := newEscalationHooks(t)
	cfg := h.config("") + `
classification:
  rules:
    - name: serving
      matchers: ['alertname="ModelDown"']
      category: system_health
      priority: critical
      action: immediate_intervention
    - name: drift
      matchers: ['alertname="FeatureDrift"']
      category: model_performance
      priority: high
      action: retrain
`
	ta := startAlertd(t, cfg, map[string]string{"rules.yml": "groups: []\n"}, func(o *Options) { o.RoutePrefix = "/alertd/" })
	// The browser starts after alertd, so that it is stopped before alertd
	// is: a socket chromium opened ahead of need would otherwise hold up
	// alertd's web server shutdown (http.Server waits 5s for new connections).
	ctx := browser(t)
	// The helpers address the API under the prefix.
	a := *ta
	a.URL += "/alertd"

	critical := model.LabelSet{"alertname": "ModelDown", "severity": "critical", "model": "fraud-detector"}
	warning := model.LabelSet{"alertname": "FeatureDrift", "severity": "warning", "model": "fraud-detector", "feature": "amount"}
	postAlertJSON(t, &a, `{"labels":{"alertname":"ModelDown","severity":"critical","model":"fraud-detector"},`+
		`"annotations":{"summary":"fraud-detector answers no predictions: 100% of requests fail"}}`)
	postAlertJSON(t, &a, `{"labels":{"alertname":"FeatureDrift","severity":"warning","model":"fraud-detector","feature":"amount"},`+
		`"annotations":{"summary":"PSI of <amount> is 0.31 > 0.2 & rising"}}`)
	waitEscalationEvents(t, h.l1, "trigger")
	var down incidentWithEscalation
	require.Eventually(t, func() bool {
		ins := escalatedIncidents(t, &a)
		for _, in := range ins {
			if in.GroupLabels["alertname"] == "ModelDown" && in.Escalation != nil && in.Escalation.Pending == 0 {
				down = in
			}
		}
		return len(ins) == 2 && down.ID != ""
	}, 30*time.Second, 20*time.Millisecond, "the two incidents never opened")
	al := waitAlert(t, &a, critical)
	fp := al.Fingerprint

	incident := fmt.Sprintf(`article[data-incident=%q]`, down.ID)
	row := fmt.Sprintf(`%s tr[data-fingerprint=%q]`, incident, fp)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(a.URL+"/incidents"),
		chromedp.WaitVisible(chromedp.CSS(row)),
	))
	state, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(incident+` [data-field="state"]`)))
	require.NoError(t, err)
	require.Equal(t, "open", strings.ToLower(state))
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
		`[...document.querySelectorAll(%q)].map((c) => c.textContent)`, row+" > *")))
	require.NoError(t, err)
	require.Len(t, cells, 7, "alert, state, priority, category, explanation, history, feedback")
	require.Contains(t, cells[0], "ModelDown")
	require.Equal(t, "firing", cells[1])
	require.Equal(t, "critical", cells[2])
	require.Equal(t, "system_health", cells[3])
	require.Contains(t, cells[4], "fraud-detector answers no predictions")
	require.Contains(t, cells[4], "system_health/critical/immediate_intervention", "the classifier's explanation")
	require.Contains(t, cells[5], "decisions")

	// Data is text: the drift alert's markup shows as written.
	driftFP := warning.Fingerprint().String()
	summary, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`document.querySelector('tr[data-fingerprint=%q] td:nth-of-type(4)').textContent`, driftFP)))
	require.NoError(t, err)
	require.Contains(t, summary, "PSI of <amount> is 0.31 > 0.2 & rising")
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#incidents amount").length`))
	require.NoError(t, err)
	require.Zero(t, n, "data was rendered as HTML")

	// Acknowledge, as alice.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("by"), "alice"),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[aria-label="Acknowledge incident %s"]`, down.ID))),
		chromedp.WaitVisible(chromedp.CSS(incident+`[data-state="acknowledged"]`)),
	))
	state, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(incident+` [data-field="state"]`)))
	require.NoError(t, err)
	require.Equal(t, "acknowledged", strings.ToLower(state))
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
	require.NoError(t, err)
	require.Equal(t, "Incident "+down.ID+" acknowledged.", status)
	disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(
		`document.querySelector('button[aria-label="Acknowledge incident %s"]').disabled`, down.ID)))
	require.NoError(t, err)
	require.True(t, disabled, "Acknowledge stays enabled once acknowledged")
	for _, in := range escalatedIncidents(t, &a) {
		if in.ID == down.ID {
			require.True(t, in.Acknowledged)
			require.Equal(t, "acknowledged", in.Escalation.Status)
			require.Equal(t, "alice", in.Escalation.AcknowledgedBy)
		}
	}
	waitEscalationEvents(t, h.l1, "trigger", "acknowledge")

	// A verdict on the drift alert: its button shows as pressed, and the
	// alert's history has it.
	fpButton := `button[aria-label="False positive: feedback on alert FeatureDrift"]`
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(fpButton)),
		chromedp.WaitVisible(chromedp.CSS(fpButton+`[aria-pressed="true"]`)),
	))
	drift := waitAlert(t, &a, warning)
	require.Contains(t, actions(drift.History), "feedback/false_positive")

	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		// Open the critical alert's history, as an operator would.
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(row+" summary")),
			chromedp.WaitVisible(chromedp.CSS(row+" details[open] ol")),
		))
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join("..", "..", "docs", "alertd-incidents.png"), png, 0o644))
	}
}
