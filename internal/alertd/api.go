package alertd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/modelmon/modelmon/internal/web"
)

func (a *Alertd) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(a.opts.MetricsPath, promhttp.InstrumentMetricHandler(a.reg, promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)

	// Prometheus's query API over the embedded TSDB, enough for Grafana's
	// Prometheus data source.
	mux.HandleFunc("/api/v1/query", a.apiQuery)
	mux.HandleFunc("/api/v1/query_range", a.apiQueryRange)
	mux.HandleFunc("/api/v1/series", a.apiSeries)
	mux.HandleFunc("/api/v1/labels", a.apiLabels)
	mux.HandleFunc("GET /api/v1/label/{name}/values", a.apiLabelValues)
	mux.HandleFunc("GET /api/v1/metadata", func(w http.ResponseWriter, _ *http.Request) { respond(w, map[string]any{}) })
	mux.HandleFunc("GET /api/v1/status/buildinfo", func(w http.ResponseWriter, _ *http.Request) {
		respond(w, map[string]string{
			"version": version.Version, "revision": version.Revision, "branch": version.Branch,
			"buildUser": version.BuildUser, "buildDate": version.BuildDate, "goVersion": version.GoVersion,
		})
	})

	// Alerts and rules, with state and history.
	mux.HandleFunc("GET /api/v1/alerts", a.apiAlerts)
	mux.HandleFunc("GET /api/v1/rules", a.apiRules)
	mux.HandleFunc("POST /api/v1/alerts/{fingerprint}/feedback", a.postFeedback)
	mux.HandleFunc("POST /api/v1/silences", a.postSilence)
	mux.HandleFunc("GET /api/v1/silences", a.getSilences)
	mux.HandleFunc("DELETE /api/v1/silences/{id}", a.deleteSilence)
	mux.HandleFunc("POST /api/v1/maintenance_windows", a.postMaintenanceWindow)
	mux.HandleFunc("GET /api/v1/maintenance_windows", a.getMaintenanceWindows)
	mux.HandleFunc("DELETE /api/v1/maintenance_windows/{id}", a.deleteMaintenanceWindow)
	mux.HandleFunc("POST /api/v1/deployments", a.postDeployment)
	mux.HandleFunc("GET /api/v1/deployments", a.getDeployments)
	mux.HandleFunc("GET /api/v1/actions", a.getActions)
	mux.HandleFunc("GET /api/v1/actions/requests", a.getActionRequests)
	mux.HandleFunc("POST /api/v1/actions/requests/{id}/approve", a.postActionDecision(true))
	mux.HandleFunc("POST /api/v1/actions/requests/{id}/reject", a.postActionDecision(false))

	// The ledger: acknowledgements, incidents, the noise report and
	// suppression rules proposed from verdicts.
	mux.HandleFunc("POST /api/v1/alerts/{fingerprint}/acknowledge", a.postAcknowledge)
	mux.HandleFunc("GET /api/v1/incidents", a.getIncidents)
	mux.HandleFunc("POST /api/v1/incidents/{id}/acknowledge", a.postIncidentAcknowledge)
	mux.HandleFunc("POST /api/v1/incidents/{id}/unacknowledge", a.postIncidentUnacknowledge)
	mux.HandleFunc("POST /api/v1/incidents/{id}/resolve", a.postIncidentResolve)
	mux.HandleFunc("POST /api/v1/incidents/{id}/snooze", a.postIncidentSnooze)
	mux.HandleFunc("GET /api/v1/report", a.getReport)
	mux.HandleFunc("GET /api/v1/ledger", a.getLedger)
	mux.HandleFunc("POST /api/v1/suppressions/preview", a.postSuppressionPreview)
	mux.HandleFunc("POST /api/v1/suppressions", a.postSuppression)
	mux.HandleFunc("GET /api/v1/suppressions", a.getSuppressions)
	mux.HandleFunc("DELETE /api/v1/suppressions/{id}", a.deleteSuppression)

	// Notification delivery: the outbox and its dead letters, and Slack's
	// buttons.
	mux.HandleFunc("GET /api/v1/outbox", a.getOutbox)
	mux.HandleFunc("GET /api/v1/outbox/dead_letters", a.getDeadLetters)
	mux.HandleFunc("POST /api/v1/outbox/dead_letters/{key}/redrive", a.postRedrive)
	mux.HandleFunc("DELETE /api/v1/outbox/dead_letters/{key}", a.deleteDeadLetter)
	mux.HandleFunc("POST /api/v1/slack/interactions", a.postSlackInteraction)

	// Intake.
	mux.HandleFunc(endpointV2Alerts, a.postV2Alerts) // other methods than GET: a 405 it counts
	// Alertmanager's API v2, read side (apiv2.go).
	mux.HandleFunc("GET "+endpointV2Alerts, a.getV2Alerts)
	mux.HandleFunc("GET /api/v2/alerts/groups", a.getV2AlertGroups)
	mux.HandleFunc("GET /api/v2/status", a.getV2Status)
	mux.HandleFunc("GET /api/v2/receivers", a.getV2Receivers)
	mux.HandleFunc("GET /api/v2/silences", a.getV2Silences)
	mux.HandleFunc("POST /api/v2/silences", a.postV2Silence)
	mux.HandleFunc("GET /api/v2/silence/{id}", a.getV2Silence)
	mux.HandleFunc("DELETE /api/v2/silence/{id}", a.deleteV2Silence)
	mux.HandleFunc(endpointWebhook, a.postWebhook)

	// alertd's own page: the incidents, with buttons for the endpoints
	// above.
	registerWebUI(mux)

	err := web.Register(mux, web.Options{
		Name:        "alertd",
		Description: "modelmon's alert engine: Prometheus rules, alert intake, routing and notification.",
		Version:     version.Info(),
		RoutePrefix: a.opts.RoutePrefix,
		Links: []toolkit.LandingLinks{
			{Address: "/incidents", Text: "Incidents page", Description: "current incidents with priority, category, explanation and history; acknowledge, resolve and give feedback"},
			{Address: a.opts.MetricsPath, Text: "Metrics"},
			{Address: "/api/v1/alerts", Text: "Alerts", Description: "current alerts with state and the history of decisions"},
			{Address: "/api/v1/rules", Text: "Rules", Description: "rule groups with health, last error and evaluation time"},
			{Address: "/api/v1/incidents", Text: "Incidents", Description: "open and recently closed incidents: related alerts grouped as they are notified"},
			{Address: "/api/v1/report", Text: "Noise report", Description: "pages, suppressions, precision and response times of the last 7 days, from the ledger"},
			{Address: "/api/v1/outbox", Text: "Outbox", Description: "notifications waiting for delivery, by receiver; dead letters under /api/v1/outbox/dead_letters"},
		},
		Ready:  a.ready.Load,
		Reload: a.Reload,
	})
	if err != nil {
		panic(err) // only on a malformed landing page template
	}
	return mux
}

// apiError is an error of the query API, with Prometheus's error types.
type apiError struct {
	typ    string // bad_data, execution, timeout, canceled, internal
	err    error
	status int
}

func (e *apiError) Error() string { return e.err.Error() }

func badData(err error) *apiError {
	return &apiError{typ: "bad_data", err: err, status: http.StatusBadRequest}
}

// respond writes Prometheus's success envelope.
func respond(w http.ResponseWriter, data any, warnings ...string) {
	w.Header().Set("Content-Type", "application/json")
	body := map[string]any{"status": "success", "data": data}
	if len(warnings) > 0 {
		body["warnings"] = warnings
	}
	if err := json.NewEncoder(w).Encode(body); err != nil {
		// The client went away mid-response; nothing else to do.
		return
	}
}

// respondError writes Prometheus's error envelope.
func respondError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": e.typ, "error": e.err.Error()})
}

// parseTime accepts Unix seconds (with fraction) and RFC 3339, as Prometheus does.
func parseTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration accepts seconds (with fraction) and Prometheus durations.
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d := f * float64(time.Second)
		if d > math.MaxInt64 || d < math.MinInt64 {
			return 0, fmt.Errorf("cannot parse %q to a valid duration: it overflows int64", s)
		}
		return time.Duration(d), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

func (a *Alertd) queryContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	ctx := r.Context()
	if to := r.FormValue("timeout"); to != "" {
		d, err := parseDuration(to)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		return ctx, cancel, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	return ctx, cancel, nil
}

func (a *Alertd) apiQuery(w http.ResponseWriter, r *http.Request) {
	ts, err := parseTime(r.FormValue("time"), a.opts.Now())
	if err != nil {
		respondError(w, badData(fmt.Errorf("invalid parameter \"time\": %w", err)))
		return
	}
	ctx, cancel, err := a.queryContext(r)
	if err != nil {
		respondError(w, badData(fmt.Errorf("invalid parameter \"timeout\": %w", err)))
		return
	}
	defer cancel()
	q, err := a.engine.NewInstantQuery(ctx, a.db, nil, r.FormValue("query"), ts)
	if err != nil {
		respondError(w, badData(fmt.Errorf("invalid parameter \"query\": %w", err)))
		return
	}
	a.execute(ctx, w, q)
}

func (a *Alertd) apiQueryRange(w http.ResponseWriter, r *http.Request) {
	start, err := parseTime(r.FormValue("start"), time.Time{})
	if err != nil || start.IsZero() {
		respondError(w, badData(fmt.Errorf("invalid parameter \"start\": %v", orMissing(err))))
		return
	}
	end, err := parseTime(r.FormValue("end"), time.Time{})
	if err != nil || end.IsZero() {
		respondError(w, badData(fmt.Errorf("invalid parameter \"end\": %v", orMissing(err))))
		return
	}
	if end.Before(start) {
		respondError(w, badData(errors.New("end timestamp must not be before start time")))
		return
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		respondError(w, badData(fmt.Errorf("invalid parameter \"step\": %w", err)))
		return
	}
	if step <= 0 {
		respondError(w, badData(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer")))
		return
	}
	// As Prometheus: at most 11,000 points per series.
	if end.Sub(start)/step > 11000 {
		respondError(w, badData(errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")))
		return
	}
	ctx, cancel, err := a.queryContext(r)
	if err != nil {
		respondError(w, badData(fmt.Errorf("invalid parameter \"timeout\": %w", err)))
		return
	}
	defer cancel()
	q, err := a.engine.NewRangeQuery(ctx, a.db, nil, r.FormValue("query"), start, end, step)
	if err != nil {
		respondError(w, badData(fmt.Errorf("invalid parameter \"query\": %w", err)))
		return
	}
	a.execute(ctx, w, q)
}

func orMissing(err error) error {
	if err == nil {
		return errors.New("missing")
	}
	return err
}

func (a *Alertd) execute(ctx context.Context, w http.ResponseWriter, q promql.Query) {
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		respondError(w, queryError(res.Err))
		return
	}
	respond(w, map[string]any{"resultType": res.Value.Type(), "result": res.Value}, warnings(res.Warnings)...)
}

func warnings(an annotations.Annotations) []string {
	var out []string
	for _, err := range an {
		out = append(out, err.Error())
	}
	return out
}

// queryError maps engine errors to Prometheus's API error types.
func queryError(err error) *apiError {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		storage  promql.ErrStorage
	)
	switch {
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{typ: "timeout", err: err, status: http.StatusServiceUnavailable}
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return &apiError{typ: "canceled", err: err, status: 499}
	case errors.As(err, &storage):
		return &apiError{typ: "internal", err: err, status: http.StatusInternalServerError}
	}
	return &apiError{typ: "execution", err: err, status: http.StatusUnprocessableEntity}
}

// selection parses match[], start and end for the metadata endpoints.
func (a *Alertd) selection(r *http.Request, required bool) ([][]*labels.Matcher, time.Time, time.Time, *apiError) {
	if err := r.ParseForm(); err != nil {
		return nil, time.Time{}, time.Time{}, badData(fmt.Errorf("error parsing form values: %w", err))
	}
	ms := r.Form["match[]"]
	if required && len(ms) == 0 {
		return nil, time.Time{}, time.Time{}, badData(errors.New("no match[] parameter provided"))
	}
	var sets [][]*labels.Matcher
	for _, m := range ms {
		sel, err := promqlParser.ParseMetricSelector(m)
		if err != nil {
			return nil, time.Time{}, time.Time{}, badData(fmt.Errorf("invalid parameter \"match[]\": %w", err))
		}
		sets = append(sets, sel)
	}
	start, err := parseTime(r.Form.Get("start"), time.UnixMilli(math.MinInt64/2))
	if err != nil {
		return nil, time.Time{}, time.Time{}, badData(fmt.Errorf("invalid parameter \"start\": %w", err))
	}
	end, err := parseTime(r.Form.Get("end"), time.UnixMilli(math.MaxInt64/2))
	if err != nil {
		return nil, time.Time{}, time.Time{}, badData(fmt.Errorf("invalid parameter \"end\": %w", err))
	}
	return sets, start, end, nil
}

func (a *Alertd) apiSeries(w http.ResponseWriter, r *http.Request) {
	sets, start, end, aerr := a.selection(r, true)
	if aerr != nil {
		respondError(w, aerr)
		return
	}
	q, err := a.db.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		respondError(w, &apiError{typ: "internal", err: err, status: http.StatusInternalServerError})
		return
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: start.UnixMilli(), End: end.UnixMilli(), Func: "series"}
	var sss []storage.SeriesSet
	for _, ms := range sets {
		sss = append(sss, q.Select(r.Context(), len(sets) > 1, hints, ms...))
	}
	set := storage.NewMergeSeriesSet(sss, 0, storage.ChainedSeriesMerge)
	out := []labels.Labels{}
	for set.Next() {
		out = append(out, set.At().Labels())
	}
	if err := set.Err(); err != nil {
		respondError(w, queryError(err))
		return
	}
	respond(w, out)
}

func (a *Alertd) apiLabels(w http.ResponseWriter, r *http.Request) {
	sets, start, end, aerr := a.selection(r, false)
	if aerr != nil {
		respondError(w, aerr)
		return
	}
	a.labelQuery(w, r, start, end, sets, func(q storage.Querier, ms []*labels.Matcher) ([]string, error) {
		names, _, err := q.LabelNames(r.Context(), nil, ms...)
		return names, err
	})
}

func (a *Alertd) apiLabelValues(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	sets, start, end, aerr := a.selection(r, false)
	if aerr != nil {
		respondError(w, aerr)
		return
	}
	a.labelQuery(w, r, start, end, sets, func(q storage.Querier, ms []*labels.Matcher) ([]string, error) {
		vals, _, err := q.LabelValues(r.Context(), name, nil, ms...)
		return vals, err
	})
}

// labelQuery runs f for each matcher set (or once without matchers) and
// merges the sorted, distinct results.
func (a *Alertd) labelQuery(w http.ResponseWriter, _ *http.Request, start, end time.Time, sets [][]*labels.Matcher, f func(storage.Querier, []*labels.Matcher) ([]string, error)) {
	q, err := a.db.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		respondError(w, &apiError{typ: "internal", err: err, status: http.StatusInternalServerError})
		return
	}
	defer q.Close()
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	seen := map[string]bool{}
	out := []string{}
	for _, ms := range sets {
		vals, err := f(q, ms)
		if err != nil {
			respondError(w, queryError(err))
			return
		}
		for _, v := range vals {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	slices.Sort(out)
	respond(w, out)
}

// promqlParser parses the metadata endpoints' match[] selectors.
var promqlParser = parser.NewParser(parser.Options{})
