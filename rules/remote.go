package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// Remote answers rule queries from a Prometheus-compatible query API
// (Prometheus, Thanos, Mimir, VictoriaMetrics) and keeps track of whether
// that API can be reached.
//
// A query that the API rejects (bad PromQL, a query timeout, too many
// samples, an answer over MaxAnswerBytes) fails that rule only; a request
// that does not get an answer (the connection refused, the server down or
// failing with 5xx) fails with a DownError and marks the data source down,
// so callers can hold the alerts of the rules it fails instead of
// resolving them. A 429 or 503 with Retry-After keeps queries
// from being sent until then (WaitError). An answer that lacks part of the
// data (a Thanos Query that refused partial data, a VictoriaMetrics answer
// with isPartial) fails the query and marks the data source down too
// (PartialError). Answers with warnings (a Thanos partial response allowed
// by the URL, a PromQL warning) are used, logged and counted.
type Remote struct {
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	address string
	api     v1.API
	timeout time.Duration
	// allowPartial is set when the address's own parameters ask for
	// partial answers (deny_partial_response=0): isPartial answers are
	// then used, with a warning.
	allowPartial bool
	// waitUntil is when the data source's Retry-After lets queries go
	// again; waitStatus is the answer that set it.
	waitUntil  time.Time
	waitStatus string
	// started numbers requests in the order they start; observed is the
	// number of the one the state below is from. An older request that
	// finishes after a newer one does not change it: the state is that of
	// the most recently started request that finished.
	started, observed uint64
	up                bool
	lastErr           error
	lastSuccess       time.Time
	since             time.Time
	// queries counts requests; failed counts those that failed, by
	// reason (Reasons).
	queries uint64
	failed  map[string]uint64
	// warned counts answers with warnings; logged holds, per query (a
	// template's and an auxiliary one apart from a rule's, asker.logKey),
	// the warnings or partial answer last logged, so the same ones are
	// not logged again at every evaluation.
	warned uint64
	logged map[string]string
}

// Reasons a query to the remote API fails, the values of the reason label
// of alertd's datasource failure metrics. All but ReasonQuery mark the data
// source down.
const (
	// ReasonUnavailable: no answer, or not the API's (connection refused,
	// no answer in time, 5xx, 4xx such as 401, an auth proxy's login page).
	ReasonUnavailable = "unavailable"
	// ReasonRetryAfter: not sent, as a Retry-After asked (WaitError).
	ReasonRetryAfter = "retry_after"
	// ReasonPartialResponse: the answer lacks part of the data, or the data
	// source refused to answer without it (PartialError).
	ReasonPartialResponse = "partial_response"
	// ReasonQuery: the API answered with an error about the query (bad
	// PromQL, a query timeout, too many samples, a Thanos store's limit,
	// an answer over MaxAnswerBytes); that query fails, the data source is
	// up.
	ReasonQuery = "query"
)

// Reasons are the values of the reason label, in the order above.
var Reasons = []string{ReasonUnavailable, ReasonRetryAfter, ReasonPartialResponse, ReasonQuery}

// DownError is the error of a query that failed because the data source is
// down rather than because of the query: it did not answer (or not as the
// API), a Retry-After kept the query from being sent, or the answer lacks
// part of the data. A rule whose evaluation fails with it cannot tell
// whether its alerts still hold, so callers hold them instead of letting
// them resolve. Its text is Err's.
type DownError struct {
	// Reason is ReasonUnavailable, ReasonRetryAfter or
	// ReasonPartialResponse.
	Reason string
	Err    error
}

func (e *DownError) Error() string { return e.Err.Error() }

func (e *DownError) Unwrap() error { return e.Err }

// DownReason returns why err says the data source is down, the Reason of
// the DownError it wraps; "" when it wraps none (the query's own error, a
// cancelled query, nil).
func DownReason(err error) string {
	var de *DownError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

// downReason classifies an error that marks the data source down.
func downReason(err error) string {
	var pe *PartialError
	var we *WaitError
	switch {
	case errors.As(err, &pe):
		return ReasonPartialResponse
	case errors.As(err, &we):
		return ReasonRetryAfter
	}
	return ReasonUnavailable
}

// maxLoggedQueries bounds Remote.logged; past it, it starts over.
const maxLoggedQueries = 1000

// RemoteOptions configure a Remote.
type RemoteOptions struct {
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
	// Timeout bounds each query: the API gets it as the query's timeout,
	// and alertd waits a little longer for the answer. 0 means none.
	Timeout time.Duration
	// Logger logs the warnings of answers; nil discards them.
	Logger *slog.Logger
}

// NewRemote returns a Remote for the API at address.
func NewRemote(address string, o RemoteOptions) (*Remote, error) {
	r := &Remote{logger: o.Logger, now: time.Now, up: true, failed: map[string]uint64{}, logged: map[string]string{}}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if err := r.Update(address, o.Client, o.Timeout); err != nil {
		return nil, err
	}
	return r, nil
}

// Update makes later queries go to the API at address, with client and
// timeout, as NewRemote's. Queries under way finish on the previous API. A
// new address forgets a Retry-After of the previous one.
func (r *Remote) Update(address string, client *http.Client, timeout time.Duration) error {
	u, err := url.Parse(address)
	if err != nil {
		return fmt.Errorf("couldn't create data source client: %w", err)
	}
	if client == nil {
		client = http.DefaultClient
	}
	next := client.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c := *client
	c.Transport = &transport{next: next, params: u.Query(), now: func() time.Time { return r.now() },
		retryAfter: func(status string, d time.Duration) { r.pause(address, status, d) }}
	ac, err := api.NewClient(api.Config{Address: address, Client: &c})
	if err != nil {
		return fmt.Errorf("couldn't create data source client: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if address != r.address {
		r.waitUntil, r.waitStatus = time.Time{}, ""
	}
	r.address, r.api, r.timeout = address, v1.NewAPI(partialClient{ac}), timeout
	r.allowPartial = allowsPartial(u.Query())
	return nil
}

// pause keeps queries from being sent for d, as an answer of the API at
// address with status asked with Retry-After. An answer of an address that
// has since been replaced is of no concern.
func (r *Remote) pause(address, status string, d time.Duration) {
	until := r.now().Add(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	if address == r.address && until.After(r.waitUntil) {
		r.waitUntil, r.waitStatus = until, status
	}
}

// target is the API a request goes to, with the settings it is sent with.
type target struct {
	api          v1.API
	timeout      time.Duration
	allowPartial bool
}

// begin numbers a request that starts now, and returns the API it goes
// to, or the WaitError that keeps it from being sent.
func (r *Remote) begin(now time.Time) (uint64, target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started++
	if now.Before(r.waitUntil) {
		return r.started, target{}, &WaitError{Status: r.waitStatus, Until: r.waitUntil}
	}
	return r.started, target{api: r.api, timeout: r.timeout, allowPartial: r.allowPartial}, nil
}

// Query implements promrules.QueryFunc: an instant query at t. Scalars become
// a one-sample vector, as with the embedded engine.
func (r *Remote) Query(ctx context.Context, q string, t time.Time) (promql.Vector, error) {
	val, err := r.query(ctx, q, t)
	if err != nil {
		return nil, fmt.Errorf("remote query: %w", err)
	}
	return toVector(val, t)
}

// observe counts request seq and records whether the API answered it,
// unless a request that started later has already finished. It returns
// err, as a DownError when it marks the data source down.
func (r *Remote) observe(ctx context.Context, seq uint64, err error, now time.Time) error {
	down := err != nil && unavailable(ctx, err)
	reason := ""
	switch {
	case down:
		reason = downReason(err)
		err = &DownError{Reason: reason, Err: err}
	case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(ctx.Err(), context.Canceled):
		// Not a query alertd gave up on (a reload, shutdown).
		reason = ReasonQuery
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries++
	if reason != "" {
		r.failed[reason]++
	}
	if !down && now.After(r.lastSuccess) {
		r.lastSuccess = now
	}
	if seq < r.observed {
		return err
	}
	r.observed = seq
	if !down {
		if !r.up {
			r.since = now
		}
		r.up, r.lastErr = true, nil
		return err
	}
	if r.up {
		r.since = now
	}
	r.up, r.lastErr = false, err
	return err
}

// unavailable tells a data source that did not answer from one that answered
// with an error about the query. What answered in a way alertd cannot read
// (an auth proxy's login page with 200, a web UI at a wrong path) is not the
// API: it is down too, and alerts are held rather than resolved by rules
// that cannot evaluate.
func unavailable(ctx context.Context, err error) bool {
	if tooLarge(err) {
		return false
	}
	var pe *PartialError
	if errors.As(err, &pe) {
		return true
	}
	var ae *v1.Error
	if errors.As(err, &ae) {
		switch ae.Type {
		case v1.ErrBadData, v1.ErrExec, v1.ErrTimeout:
			return false
		case v1.ErrCanceled:
			return ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled)
		}
		// ErrServer, ErrClient, ErrBadResponse, internal, unavailable, and
		// VictoriaMetrics's status codes but those about the query.
		return !queryStatus(ae.Type)
	}
	return !errors.Is(err, context.Canceled)
}

// queryStatus tells an errorType that is an HTTP status code saying the
// query was wrong. VictoriaMetrics types its errors so (its
// httpserver.SendPrometheusError writes "errorType":"422", the status it
// answers with): 422 for a query it cannot parse or execute (many-to-many
// matching, a series limit), 400 for a bad parameter. Those are the
// query's errors, as Prometheus's bad_data and execution are. A 5xx (503
// when a vmselect refuses partial data) is not, nor are the 4xx that are
// not about the query: 429 (overloaded), 401, 403 and 407 (access) and
// 404 (a wrong path).
func queryStatus(t v1.ErrorType) bool {
	code, err := strconv.Atoi(string(t))
	if err != nil || code < 400 || code > 499 {
		return false
	}
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusProxyAuthRequired, http.StatusTooManyRequests:
		return false
	}
	return true
}

// apiError returns the error an answer's JSON body states. client_golang
// reads the body of 400 and 422 answers only, so the errors Prometheus sends
// with other codes (a query timeout is a 503, a cancelled query a 499, an
// internal error a 500, all with errorType and error in the body) come as a
// bare "server error: 503"; without this a query timeout would mark the data
// source down, and the message would not say why.
func apiError(err error) error {
	var ae *v1.Error
	if !errors.As(err, &ae) || (ae.Type != v1.ErrServer && ae.Type != v1.ErrClient) || ae.Detail == "" {
		return err
	}
	var body struct {
		Status    string       `json:"status"`
		ErrorType v1.ErrorType `json:"errorType"`
		Error     string       `json:"error"`
	}
	if json.Unmarshal([]byte(ae.Detail), &body) != nil || body.Status != "error" || body.ErrorType == "" {
		return err
	}
	return &v1.Error{Type: body.ErrorType, Msg: fmt.Sprintf("%s (%s)", body.Error, ae.Msg)}
}

// Status says whether the data source answered the most recently started
// request that finished, since when it has been in that state, when it
// last answered, and the DownError that made it down. Requests for
// different queries can fail differently (a query that needs a missing
// Thanos store, one that does not): callers that judge rules use each
// rule's own error (DownReason).
func (r *Remote) Status() (up bool, since, lastSuccess time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up, r.since, r.lastSuccess, r.lastErr
}

// Queries returns the number of requests, sent or kept from being sent by
// a Retry-After.
func (r *Remote) Queries() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queries
}

// Failed returns the number of requests that failed for reason, one of
// Reasons. Requests a caller cancelled are not counted.
func (r *Remote) Failed(reason string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed[reason]
}

// toVector converts an API result into what the rule manager expects.
func toVector(val model.Value, t time.Time) (promql.Vector, error) {
	switch v := val.(type) {
	case model.Vector:
		out := make(promql.Vector, 0, len(v))
		for _, s := range v {
			if s.Histogram != nil {
				return nil, errors.New("remote query: native histogram results are not supported in rules; aggregate them to floats (e.g. histogram_quantile)")
			}
			out = append(out, promql.Sample{Metric: metricLabels(s.Metric), T: int64(s.Timestamp), F: float64(s.Value)})
		}
		return out, nil
	case *model.Scalar:
		return promql.Vector{{T: int64(v.Timestamp), F: float64(v.Value), Metric: labels.EmptyLabels()}}, nil
	case nil:
		return promql.Vector{}, nil
	}
	return nil, fmt.Errorf("remote query: rule queries must return a vector or scalar, got %s at %s", val.Type(), t.UTC().Format(time.RFC3339))
}

// QueryRange runs a range query, for replaying history into detectors.
func (r *Remote) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	val, err := r.do(ctx, q, func(ctx context.Context, api v1.API, timeout time.Duration) (model.Value, v1.Warnings, error) {
		val, ws, _, err := api.QueryRange(ctx, q, v1.Range{Start: start, End: end, Step: step}, v1.WithTimeout(timeout))
		return val, ws, err
	})
	if err != nil {
		return nil, fmt.Errorf("remote range query: %w", err)
	}
	m, ok := val.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("remote range query: want a matrix, got %s", val.Type())
	}
	out := make(promql.Matrix, 0, len(m))
	for _, ss := range m {
		if len(ss.Histograms) > 0 {
			return nil, errors.New("remote range query: native histogram results are not supported; aggregate them to floats")
		}
		s := promql.Series{Metric: metricLabels(ss.Metric), Floats: make([]promql.FPoint, 0, len(ss.Values))}
		for _, p := range ss.Values {
			s.Floats = append(s.Floats, promql.FPoint{T: int64(p.Timestamp), F: float64(p.Value)})
		}
		out = append(out, s)
	}
	return out, nil
}

func metricLabels(m model.Metric) labels.Labels {
	b := labels.NewScratchBuilder(len(m))
	for n, v := range m {
		b.Add(string(n), string(v))
	}
	b.Sort()
	return b.Labels()
}

// Samples returns the raw samples of the series a selector selects in
// (start, end], read with instant queries of a range selector, a day at a
// time, so any Prometheus-compatible API can serve them. A day whose answer
// is over MaxAnswerBytes is read in halves. Native histogram samples are an
// error.
func (r *Remote) Samples(ctx context.Context, selector string, start, end time.Time) (map[string]*promql.Series, error) {
	const window = 24 * time.Hour
	out := map[string]*promql.Series{}
	for t := start; t.Before(end); t = t.Add(window) {
		until := t.Add(window)
		if until.After(end) {
			until = end
		}
		if err := r.samples(ctx, selector, t, until, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// minSamplesWindow is the shortest range Samples splits a too large answer
// down to.
const minSamplesWindow = time.Minute

// samples adds the samples of selector in (from, until] to out.
func (r *Remote) samples(ctx context.Context, selector string, from, until time.Time, out map[string]*promql.Series) error {
	q := fmt.Sprintf("%s[%dms]", selector, until.Sub(from).Milliseconds())
	val, err := r.query(ctx, q, until)
	if tooLarge(err) && until.Sub(from) >= 2*minSamplesWindow {
		mid := from.Add(until.Sub(from) / 2)
		if err := r.samples(ctx, selector, from, mid, out); err != nil {
			return err
		}
		return r.samples(ctx, selector, mid, until, out)
	}
	if err != nil {
		return fmt.Errorf("remote query %s: %w", q, err)
	}
	m, ok := val.(model.Matrix)
	if !ok {
		return fmt.Errorf("remote query %s: want a matrix, got %s", q, val.Type())
	}
	for _, ss := range m {
		if len(ss.Histograms) > 0 {
			return fmt.Errorf("remote query %s: native histogram samples are not supported", q)
		}
		k := ss.Metric.String()
		s, ok := out[k]
		if !ok {
			s = &promql.Series{Metric: metricLabels(ss.Metric)}
			out[k] = s
		}
		for _, p := range ss.Values {
			s.Floats = append(s.Floats, promql.FPoint{T: int64(p.Timestamp), F: float64(p.Value)})
		}
	}
	return nil
}

// wait is how long a request may take: the timeout the API is given, plus
// time for its answer to arrive. An API that is slow with one query answers
// "timeout" (the rule's error) within it; one that does not answer at all is
// down. Were both the same, the client would give up first, and every slow
// query would look like an outage.
func wait(timeout time.Duration) time.Duration {
	return timeout + max(time.Second, timeout/10)
}

// query runs one instant query within the timeout.
func (r *Remote) query(ctx context.Context, q string, t time.Time) (model.Value, error) {
	return r.do(ctx, q, func(ctx context.Context, api v1.API, timeout time.Duration) (model.Value, v1.Warnings, error) {
		val, ws, _, err := api.Query(ctx, q, t, v1.WithTimeout(timeout))
		return val, ws, err
	})
}

// do sends one request for query q within the timeout, unless a
// Retry-After keeps it from being sent, and records how the data source
// answered. An answer that lacks part of the data is a PartialError,
// unless the data source URL asked for partial answers.
func (r *Remote) do(ctx context.Context, q string, send func(context.Context, v1.API, time.Duration) (model.Value, v1.Warnings, error)) (model.Value, error) {
	seq, to, err := r.begin(r.now())
	if err != nil {
		return nil, r.observe(ctx, seq, err, r.now())
	}
	if to.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait(to.timeout))
		defer cancel()
	}
	var partial bool
	val, ws, err := send(context.WithValue(ctx, partialKey{}, &partial), to.api, to.timeout)
	err = refusedPartial(apiError(err))
	if err == nil && partial {
		if to.allowPartial {
			ws = append(ws, partialWarning)
		} else {
			val, err = nil, &PartialError{}
		}
	}
	err = r.observe(ctx, seq, err, r.now())
	by := askerOf(ctx)
	var pe *PartialError
	switch {
	case err == nil:
		r.warn(q, by.logKey(q), ws)
	case errors.As(err, &pe):
		r.partial(q, by, err)
	}
	return val, err
}

// auxiliaryKey is the context key of an auxiliary query's use
// (WithAuxiliary).
type auxiliaryKey struct{}

// WithAuxiliary returns ctx for an auxiliary query: one that neither a
// rule nor an anomaly detector runs, such as deployment detection's, which
// use names in logs. Its failure judges nothing of the data source (what
// counts it down is the latest evaluation of each rule and detector), and
// Remote's log of a partial answer to it says so.
func WithAuxiliary(ctx context.Context, use string) context.Context {
	return context.WithValue(ctx, auxiliaryKey{}, use)
}

// asker tells, for the logs, who asked a query: a rule or an anomaly
// detector (the zero value), an alerting rule's template
// (isTemplateQuery), or an auxiliary query's use (WithAuxiliary).
type asker struct {
	template bool
	use      string
}

func askerOf(ctx context.Context) asker {
	use, _ := ctx.Value(auxiliaryKey{}).(string)
	return asker{template: isTemplateQuery(ctx), use: use}
}

// logKey is the key of Remote.logged of query q: a template's or an
// auxiliary query that repeats a rule's expression is logged apart from
// the rule's, so that the two do not log in turn at every evaluation.
func (a asker) logKey(q string) string {
	switch {
	case a.template:
		return "template\xff" + q
	case a.use != "":
		return "auxiliary\xff" + a.use + "\xff" + q
	}
	return q
}

// partial logs that the answer to q lacked part of the data, at warning
// level, once until it changes or q is answered in full. A template's
// query (isTemplateQuery) fails its template, which expands to
// Prometheus's <error expanding template: …>, and not the rule; an
// auxiliary query (WithAuxiliary) fails its use only: the data source
// does not count as down for either.
func (r *Remote) partial(q string, by asker, err error) {
	msg, args := "Data source answered with part of the data; the query fails and the data source counts as down", []any{}
	switch {
	case by.template:
		msg = "Data source answered a template's query with part of the data; the template fails to expand, the data source does not count as down"
	case by.use != "":
		msg = "Data source answered an auxiliary query with part of the data; the query fails, the data source does not count as down"
		args = append(args, "use", by.use)
	}
	args = append(args, "query", q, "err", err)
	if !r.logChanged(by.logKey(q), "partial: "+err.Error()) {
		r.logger.Debug("Data source answered with part of the data again", append(args, "template", by.template)...)
		return
	}
	r.logger.Warn(msg, args...)
}

// logChanged records text as what was last logged under key (asker.logKey),
// and reports whether it differs from what was.
func (r *Remote) logChanged(key, text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged[key] == text {
		return false
	}
	if len(r.logged) >= maxLoggedQueries {
		clear(r.logged)
	}
	r.logged[key] = text
	return true
}

// warn counts and logs the warnings of an answer to q. Thanos answers with
// warnings when a store is down and partial responses are allowed;
// Prometheus with PromQL's. The result is used: they are logged at warning
// level once, and again when they change.
func (r *Remote) warn(q, key string, ws v1.Warnings) {
	text := strings.Join(ws, "; ")
	r.mu.Lock()
	if len(ws) == 0 {
		delete(r.logged, key)
		r.mu.Unlock()
		return
	}
	r.warned++
	r.mu.Unlock()
	if !r.logChanged(key, text) {
		r.logger.Debug("Data source answered with warnings again", "query", q, "warnings", text)
		return
	}
	r.logger.Warn("Data source answered with warnings; the result may be incomplete", "query", q, "warnings", text)
}

// Warned returns the number of answers that carried warnings.
func (r *Remote) Warned() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warned
}
