package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
// samples) fails that rule only; a request that does not get an answer (the
// connection refused, the server down or failing with 5xx) marks the data
// source down, so callers can hold alerts instead of resolving them.
type Remote struct {
	mu          sync.Mutex
	api         v1.API
	timeout     time.Duration
	up          bool
	lastErr     error
	lastSuccess time.Time
	since       time.Time
}

// NewRemote returns a Remote for the API at address, queried with client
// (nil means http.DefaultClient), each query bounded by timeout.
func NewRemote(address string, client *http.Client, timeout time.Duration) (*Remote, error) {
	c, err := api.NewClient(api.Config{Address: address, Client: client})
	if err != nil {
		return nil, fmt.Errorf("couldn't create data source client: %w", err)
	}
	return &Remote{api: v1.NewAPI(c), timeout: timeout, up: true}, nil
}

// Update makes later queries go to the API at address, with client and
// timeout, as NewRemote's. Queries under way finish on the previous API.
func (r *Remote) Update(address string, client *http.Client, timeout time.Duration) error {
	c, err := api.NewClient(api.Config{Address: address, Client: client})
	if err != nil {
		return fmt.Errorf("couldn't create data source client: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.api, r.timeout = v1.NewAPI(c), timeout
	return nil
}

// client returns the API and timeout queries use now.
func (r *Remote) client() (v1.API, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.api, r.timeout
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

// observe records whether the API answered.
func (r *Remote) observe(ctx context.Context, err error, now time.Time) {
	down := err != nil && unavailable(ctx, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !down {
		r.lastSuccess = now
		if !r.up {
			r.since = now
		}
		r.up, r.lastErr = true, nil
		return
	}
	if r.up {
		r.since = now
	}
	r.up, r.lastErr = false, err
}

// unavailable tells a data source that did not answer from one that answered
// with an error about the query. What answered in a way alertd cannot read
// (an auth proxy's login page with 200, a web UI at a wrong path) is not the
// API: it is down too, and alerts are held rather than resolved by rules
// that cannot evaluate.
func unavailable(ctx context.Context, err error) bool {
	var ae *v1.Error
	if errors.As(err, &ae) {
		switch ae.Type {
		case v1.ErrBadData, v1.ErrExec, v1.ErrTimeout:
			return false
		case v1.ErrCanceled:
			return ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled)
		}
		return true // ErrServer, ErrClient, ErrBadResponse, internal, unavailable
	}
	return !errors.Is(err, context.Canceled)
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

// Status says whether the data source answered its last request, since when
// it has been in that state, when it last answered, and the error that made
// it down.
func (r *Remote) Status() (up bool, since, lastSuccess time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up, r.since, r.lastSuccess, r.lastErr
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
	api, timeout := r.client()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait(timeout))
		defer cancel()
	}
	val, _, _, err := api.QueryRange(ctx, q, v1.Range{Start: start, End: end, Step: step}, v1.WithTimeout(timeout))
	err = apiError(err)
	r.observe(ctx, err, time.Now())
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
// time, so any Prometheus-compatible API can serve them. Native histogram
// samples are an error.
func (r *Remote) Samples(ctx context.Context, selector string, start, end time.Time) (map[string]*promql.Series, error) {
	const window = 24 * time.Hour
	out := map[string]*promql.Series{}
	for t := start; t.Before(end); t = t.Add(window) {
		until := t.Add(window)
		if until.After(end) {
			until = end
		}
		q := fmt.Sprintf("%s[%dms]", selector, until.Sub(t).Milliseconds())
		val, err := r.query(ctx, q, until)
		if err != nil {
			return nil, fmt.Errorf("remote query %s: %w", q, err)
		}
		m, ok := val.(model.Matrix)
		if !ok {
			return nil, fmt.Errorf("remote query %s: want a matrix, got %s", q, val.Type())
		}
		for _, ss := range m {
			if len(ss.Histograms) > 0 {
				return nil, fmt.Errorf("remote query %s: native histogram samples are not supported", q)
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
	}
	return out, nil
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
	api, timeout := r.client()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait(timeout))
		defer cancel()
	}
	val, _, _, err := api.Query(ctx, q, t, v1.WithTimeout(timeout))
	err = apiError(err)
	r.observe(ctx, err, time.Now())
	return val, err
}
