package alertd

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/classify"
	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// testClock is the wall clock moved forward by what a test skips, for
// alertd's Options.Now: holds of hours pass at once, and what alertd does
// not time by Options.Now (the notifier) still sees times near its own.
type testClock struct{ skipped atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.skipped.Load())) }
func (c *testClock) skip(d time.Duration)    { c.skipped.Add(int64(d)) }
func (c *testClock) options() func(*Options) { return func(o *Options) { o.Now = c.Now } }

// waitFor waits for the alert with these labels to satisfy ok and returns it.
// On failure it says what the last look found.
func waitFor(t *testing.T, a *testAlertd, ls model.LabelSet, ok func(alertJSON) bool, msg string) alertJSON {
	t.Helper()
	var got alertJSON
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, al := range a.alerts(t) {
			if al.Labels.Equal(ls) {
				got = al
				assert.Truef(c, ok(al), "%s has %+v", ls, al)
				return
			}
		}
		assert.Failf(c, "missing", "%s is not in GET /api/v1/alerts", ls)
	}, 30*time.Second, 20*time.Millisecond, msg)
	return got
}

// inState returns a condition on an alert's state.
func inState(state string) func(alertJSON) bool {
	return func(al alertJSON) bool { return al.State == state }
}

// lastOf returns the latest decision of a stage in a history.
func lastOf(h []Decision, stage string) Decision {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Stage == stage {
			return h[i]
		}
	}
	return Decision{}
}

// postAlertJSON posts one alert, given as the JSON of its fields, to
// /api/v2/alerts.
func postAlertJSON(t *testing.T, a *testAlertd, alert string) {
	t.Helper()
	code, body := post(t, a.URL+"/api/v2/alerts", "application/json", "["+alert+"]")
	require.Equal(t, http.StatusOK, code, body)
}

// postDeployment posts a deployment and returns what alertd recorded.
func postDeployment(t *testing.T, a *testAlertd, body string) deployment {
	t.Helper()
	code, resp := post(t, a.URL+"/api/v1/deployments", "application/json", body)
	require.Equal(t, http.StatusOK, code, resp)
	var r struct {
		Data deployment `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp), &r))
	return r.Data
}

// getDeployments returns GET /api/v1/deployments.
func getDeployments(t *testing.T, a *testAlertd) []deployment {
	t.Helper()
	code, r := apiGet(t, a.URL+"/api/v1/deployments")
	require.Equal(t, http.StatusOK, code)
	var out []deployment
	require.NoError(t, json.Unmarshal(r.Data, &out))
	return out
}

// A deployment posted by CI holds the alerts of that model, of the
// configured categories, for the hold; an alert that still fires then is
// released and paged once, one that resolved within the hold is never
// paged, and alerts of other categories or models are not held.
func TestDeployHoldFromAPI(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	clock := &testClock{}
	a := startAlertd(t, routes(h, nil, `
intake:
  resolve_timeout: 24h
suppression:
  deploy:
    hold: 15m
    categories: [model_performance, data_quality]
`), map[string]string{"rules.yml": "groups: []\n"}, clock.options())

	commit := clock.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	ev := postDeployment(t, a, fmt.Sprintf(`{"model":"fraud","version":"v2","environment":"prod","commit_time":%q}`, commit.Format(time.RFC3339)))
	require.Equal(t, "fraud", ev.Model)
	require.Equal(t, "success", ev.Outcome, "outcome defaults to success")
	require.Equal(t, "deploy", ev.Kind, "kind defaults to deploy")
	require.Equal(t, "api", ev.Source)
	require.WithinDuration(t, clock.Now(), ev.Time, time.Minute, "time defaults to now")
	require.True(t, commit.Equal(*ev.CommitTime))

	drift := model.LabelSet{"alertname": "FeatureDrift", "model": "fraud", "category": "drift"}
	postAlert(t, a, `{"alertname":"FeatureDrift","model":"fraud","category":"drift"}`)
	postAlert(t, a, `{"alertname":"Blip","model":"fraud","category":"data_quality"}`)
	postAlert(t, a, `{"alertname":"SidecarDown","model":"fraud","category":"availability"}`)
	postAlert(t, a, `{"alertname":"OtherModel","model":"churn","category":"drift"}`)
	postAlert(t, a, `{"alertname":"Staging","model":"fraud","category":"drift","environment":"staging"}`)

	al := waitFor(t, a, drift, inState("suppressed"), "the drift alert of the model just deployed was not held")
	d := lastOf(al.History, "deploy")
	require.Equal(t, "suppressed", d.Action)
	require.Equal(t, fmt.Sprintf(`model "fraud" deployed version v2 at %s (api); held until %s (deploy hold 15m)`,
		ev.Time.UTC().Format(time.RFC3339), ev.Time.Add(15*time.Minute).UTC().Format(time.RFC3339)), d.Reason)
	for _, name := range []string{"SidecarDown", "OtherModel", "Staging"} {
		h.wait(t, name, "firing", 30*time.Second)
	}
	n, _ := metric(t, a.Registry(), "alertd_alerts_suppressed_total", "reason", "deploy")
	require.Equal(t, 2.0, n, "FeatureDrift and Blip")
	n, _ = metric(t, a.Registry(), "alertd_deployments_total", "source", "api")
	require.Equal(t, 1.0, n)

	// Blip resolves within the hold.
	postAlertJSON(t, a, fmt.Sprintf(`{"labels":{"alertname":"Blip","model":"fraud","category":"data_quality"},"endsAt":%q}`,
		clock.Now().Add(-time.Millisecond).UTC().Format(time.RFC3339Nano)))
	waitFor(t, a, model.LabelSet{"alertname": "Blip", "model": "fraud", "category": "data_quality"}, inState("resolved"), "Blip did not resolve")
	require.Empty(t, h.matching("FeatureDrift", ""), "a held alert was paged")

	// The hold ends: the drift alert, still firing, is released and paged once.
	clock.skip(15 * time.Minute)
	h.wait(t, "FeatureDrift", "firing", 30*time.Second)
	al = waitFor(t, a, drift, inState("firing"), "the drift alert was not released")
	require.Equal(t, "no stage suppresses it any more", lastOf(al.History, "pipeline").Reason)
	require.Never(t, func() bool { return len(h.matching("FeatureDrift", "")) > 1 }, time.Second, 50*time.Millisecond, "paged more than once")
	require.Empty(t, h.matching("Blip", ""), "an alert that resolved within the hold was paged")

	// Every event is listed with its fields.
	got := getDeployments(t, a)
	require.Len(t, got, 1)
	require.Equal(t, ev, got[0])
	h.checkWire(t)
}

// A new version in the sidecars' modelmon_model_info, scraped by the
// embedded engine, is a deployment: its model's alerts are held. The first
// versions seen are not a deployment, and the versions seen are kept, so a
// restart neither invents a deployment nor misses one made while it was
// down.
func TestDeployHoldFromModelInfo(t *testing.T) {
	t.Parallel()
	info := func(vs ...string) string {
		s := "# TYPE modelmon_model_info gauge\n"
		for _, v := range vs {
			s += `modelmon_model_info{model="fraud",version="` + v + `"} 1` + "\n"
		}
		return s
	}
	target := newExposition(t, info("v1"))
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, `
scrape_configs:
  - job_name: sidecars
    scrape_interval: 1s
    static_configs:
      - targets: ["`+target.Addr+`"]
suppression:
  deploy: {hold: 1h}
`))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)
	seen := func(a *testAlertd) []string {
		a.deployments.mu.Lock()
		defer a.deployments.mu.Unlock()
		return slices.Clone(a.deployments.versions["fraud"])
	}
	require.Eventually(t, func() bool { return slices.Equal(seen(a), []string{"v1"}) }, 30*time.Second, 20*time.Millisecond)
	require.Empty(t, getDeployments(t, a), "the first versions seen are no deployment")

	target.set(info("v2"))
	var ev deployment
	require.Eventually(t, func() bool {
		evs := getDeployments(t, a)
		if len(evs) == 1 {
			ev = evs[0]
		}
		return len(evs) == 1
	}, 30*time.Second, 20*time.Millisecond, "no deployment recorded")
	require.Equal(t, "v2", ev.Version)
	require.Equal(t, "model_info", ev.Source)
	require.Equal(t, []string{"v1"}, ev.PreviousVersions)

	postAlert(t, a, `{"alertname":"AccuracyDrop","model":"fraud"}`)
	al := waitFor(t, a, model.LabelSet{"alertname": "AccuracyDrop", "model": "fraud"}, inState("suppressed"), "not held after the deploy")
	require.Contains(t, lastOf(al.History, "deploy").Reason, `model "fraud" deployed version v2 at `)
	require.Contains(t, lastOf(al.History, "deploy").Reason, "(model_info)")

	// A restart with the same version: no deployment.
	require.NoError(t, a.Stop())
	b := start(t, dir, o, logs)
	require.Eventually(t, func() bool {
		b.deployments.mu.Lock()
		defer b.deployments.mu.Unlock()
		return b.deployments.observations >= 3
	}, 30*time.Second, 20*time.Millisecond, "modelmon_model_info was not read after the restart")
	require.Equal(t, []string{"v2"}, seen(b))
	require.Len(t, getDeployments(t, b), 1, "a restart invented a deployment")
	require.NoError(t, b.Stop())

	// A version deployed while alertd was down is found after the restart.
	target.set(info("v3"))
	c := start(t, dir, o, logs)
	require.Eventually(t, func() bool {
		evs := getDeployments(t, c)
		return len(evs) == 2 && evs[1].Version == "v3" && slices.Equal(evs[1].PreviousVersions, []string{"v2"})
	}, 30*time.Second, 20*time.Millisecond, "the deployment made while alertd was down was missed: %+v", getDeployments(t, c))
}

// The deploy stage holds by model, category, environment and outcome.
func TestDeployStage(t *testing.T) {
	t0 := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	d, err := newDeployments(t.TempDir(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	for _, ev := range []deployment{
		{Model: "fraud", Version: "v2", Environment: "prod", Time: t0, Outcome: "success", Kind: "deploy", Source: "api"},
		{Model: "churn", Version: "v9", Time: t0, Outcome: "failure", Kind: "deploy", Source: "api"},
		{Model: "ranker", Version: "v1", Time: t0, Outcome: "success", Kind: "rollback", Source: "api"},
	} {
		require.NoError(t, d.record(ev))
	}
	cfg := alertconfig.DeploySuppression{Hold: model.Duration(15 * time.Minute), ModelLabel: "model",
		Categories: []classify.Category{classify.CategoryModelPerformance}}
	for _, tc := range []struct {
		name       string
		labels     model.LabelSet
		now        time.Time
		classified model.LabelValue // the classifier's category annotation, if it runs
		want       string
	}{
		{"held", model.LabelSet{"model": "fraud", "category": "drift"}, t0.Add(time.Minute), "", `model "fraud" deployed version v2 at 2025-06-03T10:00:00Z (api); held until 2025-06-03T10:15:00Z (deploy hold 15m)`},
		{"at the deploy", model.LabelSet{"model": "fraud", "category": "drift"}, t0, "", `model "fraud" deployed version v2`},
		{"the hold's last moment", model.LabelSet{"model": "fraud", "category": "drift"}, t0.Add(15*time.Minute - time.Nanosecond), "", `model "fraud" deployed version v2`},
		{"hold over", model.LabelSet{"model": "fraud", "category": "drift"}, t0.Add(15 * time.Minute), "", ""},
		{"before the deploy", model.LabelSet{"model": "fraud", "category": "drift"}, t0.Add(-time.Minute), "", ""},
		{"other category", model.LabelSet{"model": "fraud", "category": "availability"}, t0.Add(time.Minute), "", ""},
		{"no category label", model.LabelSet{"model": "fraud"}, t0.Add(time.Minute), "", ""},
		{"classified category", model.LabelSet{"model": "fraud"}, t0.Add(time.Minute), "model_performance", `model "fraud" deployed version v2`},
		{"classified otherwise", model.LabelSet{"model": "fraud", "category": "drift"}, t0.Add(time.Minute), "business", ""},
		{"same environment", model.LabelSet{"model": "fraud", "category": "drift", "environment": "prod"}, t0.Add(time.Minute), "", `model "fraud" deployed version v2`},
		{"other environment", model.LabelSet{"model": "fraud", "category": "drift", "environment": "staging"}, t0.Add(time.Minute), "", ""},
		{"failed deploy", model.LabelSet{"model": "churn", "category": "drift"}, t0.Add(time.Minute), "", ""},
		{"rollback", model.LabelSet{"model": "ranker", "category": "drift"}, t0.Add(time.Minute), "", `model "ranker" rolled back to version v1`},
		{"no model label", model.LabelSet{"category": "drift"}, t0.Add(time.Minute), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.set(cfg, tc.classified != "")
			al := &Alert{}
			al.Labels = tc.labels
			if tc.classified != "" {
				al.Annotations = model.LabelSet{annotationCategory: tc.classified}
			}
			got := d.Process(t.Context(), tc.now, al)
			require.Equal(t, tc.want != "", al.Suppressed)
			require.True(t, strings.HasPrefix(got.Reason, tc.want), got.Reason)
			if tc.want == "" {
				require.Empty(t, got.Action)
			}
		})
	}
	d.set(alertconfig.DeploySuppression{ModelLabel: "model"}, false)
	al := &Alert{}
	al.Labels = model.LabelSet{"model": "fraud"}
	require.Empty(t, d.Process(t.Context(), t0, al).Action, "hold 0 is off")
}

// observe records a deployment for each new version, none for the first
// versions seen or for versions going away, and none again for a version
// CI already posted; a record cut short by a crash is dropped on start.
func TestDeploymentsObserve(t *testing.T) {
	dir := t.TempDir()
	newD := func() *deployments {
		d, err := newDeployments(dir, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		return d
	}
	vec := func(vs ...string) promql.Vector {
		var out promql.Vector
		for _, v := range vs {
			m, ver, _ := strings.Cut(v, "@")
			out = append(out, promql.Sample{Metric: labels.FromStrings("model", m, "version", ver), F: 1})
		}
		return out
	}
	t0 := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	d := newD()
	for i, step := range []struct {
		vec  promql.Vector
		want []string // model@version of the deployments recorded
	}{
		{vec("fraud@v1", "churn@v1"), nil},
		{vec("fraud@v1", "churn@v1"), nil},
		{vec("fraud@v1", "fraud@v2", "churn@v1"), []string{"fraud@v2"}},
		{vec("fraud@v2", "churn@v1"), nil},
		{vec("churn@v1"), nil}, // fraud's sidecars not scraped: nothing known
		{vec("fraud@v2", "churn@v2", "ranker@v1"), []string{"churn@v2"}},
	} {
		evs, err := d.observe(t0.Add(time.Duration(i)*time.Minute), step.vec)
		require.NoError(t, err)
		var got []string
		for _, ev := range evs {
			got = append(got, ev.Model+"@"+ev.Version)
			require.Equal(t, "model_info", ev.Source)
		}
		require.Equal(t, step.want, got, "step %d", i)
	}
	require.NoError(t, d.record(deployment{ID: "ci", Model: "fraud", Version: "v3", Time: t0, Outcome: "success", Kind: "deploy", Source: "api"}))
	evs, err := d.observe(t0.Add(time.Hour), vec("fraud@v3", "churn@v2", "ranker@v1"))
	require.NoError(t, err)
	require.Empty(t, evs, "CI posted v3 already")

	// A restart keeps the log and the versions seen.
	d = newD()
	require.Len(t, d.list(""), 3)
	require.Len(t, d.list("fraud"), 2)
	evs, err = d.observe(t0.Add(2*time.Hour), vec("fraud@v3", "churn@v2", "ranker@v2"))
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, []string{"v1"}, evs[0].PreviousVersions)

	// A record cut short is dropped, and the log goes on after it.
	f, err := os.OpenFile(filepath.Join(dir, "deployments.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"id":"cut","model":"fr`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	d = newD()
	require.Len(t, d.list(""), 4)
	require.NoError(t, d.record(deployment{ID: "after", Model: "fraud", Version: "v4", Time: t0, Outcome: "success", Kind: "deploy", Source: "api"}))
	require.Len(t, newD().list(""), 5)

	// Any other bad record stops start-up, naming the line.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "deployments.jsonl"), []byte("{}\nnope\n{}\n"), 0o644))
	_, err = newDeployments(dir, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "deployments.jsonl:2: invalid character")
}

// Bad deployments get a 400 that names the problem, and are not recorded.
func TestDeploymentsBadInput(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, nil)
	for _, tc := range []struct{ name, body, want string }{
		{"no model", `{"version":"v1"}`, "missing field \"model\"\n"},
		{"no version", `{"model":"fraud"}`, "missing field \"version\"\n"},
		{"empty", `{}`, "missing field \"model\"\n"},
		{"unknown field", `{"model":"fraud","version":"v1","sha":"abc"}`, "couldn't parse deployment: json: unknown field \"sha\"\n"},
		{"bad JSON", `{"model":"fraud",`, "couldn't parse deployment: unexpected EOF\n"},
		{"not an object", `["fraud"]`, "couldn't parse deployment: json: cannot unmarshal array into Go value of type alertd.deploymentRequest\n"},
		{"bad outcome", `{"model":"fraud","version":"v1","outcome":"meh"}`, "invalid outcome \"meh\": want one of [success failure rollback]\n"},
		{"bad kind", `{"model":"fraud","version":"v1","kind":"canary"}`, "invalid kind \"canary\": want one of [deploy rollback]\n"},
		{"bad time", `{"model":"fraud","version":"v1","time":"yesterday"}`, `couldn't parse deployment: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"` + "\n"},
		{"commit after deploy", `{"model":"fraud","version":"v1","time":"2025-01-01T00:00:00Z","commit_time":"2025-01-02T00:00:00Z"}`, "commit_time must not be after time\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, a.URL+"/api/v1/deployments", "application/json", tc.body)
			require.Equal(t, http.StatusBadRequest, code)
			require.Equal(t, tc.want, body)
		})
	}
	require.Empty(t, getDeployments(t, a))
}

// A deployment whose line can't be written whole (the disk fills partway
// through it) is refused, and the part written is cut off: the log keeps
// the deployments before it, and the next one is written on a line of its
// own, not after a torn one, which would stop the next start.
func TestDeploymentLogFailedAppend(t *testing.T) {
	statefiletest.WithFileLimit(t, func(limit func(int64)) {
		dir := t.TempDir()
		open := func() *deployments {
			d, err := newDeployments(dir, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			return d
		}
		t0 := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
		deploy := func(version string) deployment {
			return deployment{ID: version, Model: "fraud", Version: version, Time: t0, Outcome: outcomeSuccess, Kind: kindDeploy, Source: deploySourceAPI, RecordedAt: t0}
		}
		path := filepath.Join(dir, "deployments.jsonl")
		d := open()
		require.NoError(t, d.record(deploy("v1")))
		before, err := os.ReadFile(path)
		require.NoError(t, err)

		limit(int64(len(before)) + 10)
		err = d.record(deploy("v2"))
		limit(-1)
		require.ErrorContains(t, err, "couldn't record deployment: ")
		require.ErrorContains(t, err, "file too large")
		after, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, string(before), string(after), "what the failed write wrote is cut off")

		require.NoError(t, d.record(deploy("v3")))
		var got []string
		for _, ev := range open().list("fraud") {
			got = append(got, ev.Version)
		}
		require.Equal(t, []string{"v1", "v3"}, got)
	})
}

// Deployment detection's query is no rule's: a remote data source that
// answers it with part of the data (a VictoriaMetrics cluster with a
// vmstorage node down) fails it, and the log says the data source does not
// count as down, as alertd_datasource_up shows while the rules' queries are
// answered in full.
func TestDeployDetectionPartialAnswerLeavesDatasourceUp(t *testing.T) {
	t.Parallel()
	var partial atomic.Int64
	frontend := promFrontend(t, func(w http.ResponseWriter, _ *http.Request, query string) bool {
		if !strings.Contains(query, "modelmon_model_info") {
			return false
		}
		partial.Add(1)
		writePartialAnswer(w)
		return true
	})

	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": alwaysFiringRules}, func(o *Options) { o.DatasourceURL = frontend.URL })
	h.wait(t, "AlwaysFiring", "firing", 60*time.Second)
	require.Eventually(t, func() bool { return partial.Load() > 0 }, 30*time.Second, 20*time.Millisecond, "modelmon_model_info was never queried")
	require.Never(t, func() bool {
		up, _ := metric(t, a.Registry(), "alertd_datasource_up")
		return up != 1
	}, time.Second, 10*time.Millisecond, "deployment detection's query marked the data source down")
	require.Contains(t, a.logs.String(), `msg="Data source answered an auxiliary query with part of the data; the query fails, the data source does not count as down" component=datasource use="deployment detection" query="max by (model, version) (modelmon_model_info)"`)
	require.NotContains(t, a.logs.String(), "counts as down")
	require.Eventually(t, func() bool {
		v, _ := metric(t, a.Registry(), "alertd_datasource_queries_failed_total", "reason", "partial_response")
		return v == float64(partial.Load())
	}, 10*time.Second, 10*time.Millisecond, "the partial answers are not counted")
}
