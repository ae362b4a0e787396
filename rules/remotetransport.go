package rules

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// MaxAnswerBytes bounds the body of an answer of the remote API. Neither
// client_golang's API client nor vmalert bounds it, so one query selecting
// far more than meant (a regex matching every series) can hold alertd's
// memory several times over while it is decoded. Rule answers are rarely
// above a few MiB; 64 MiB is about two million samples in Prometheus's
// JSON. It is a constant, as Prometheus's own bounds of remote-read
// requests and error bodies are, not a flag.
const MaxAnswerBytes = 64 << 20

// maxRetryAfter bounds how long one Retry-After keeps queries away, so a
// wrong header (a day, a date in the far future) cannot stop rule
// evaluation for longer: after it the next query asks again.
const maxRetryAfter = 5 * time.Minute

// defaultParams ask the stores that can answer partial data (a Thanos
// Query with a store down, a VictoriaMetrics vmselect with a vmstorage
// down) to fail instead, as Thanos's ruler does by default (its "abort"
// partial_response_strategy): a sum over what is left, or an absent() of
// what is missing, would fire or resolve alerts that are not so. Other
// APIs ignore them. A parameter the data source URL already carries
// (?partial_response=true) is the operator's choice and stays.
var defaultParams = url.Values{
	"partial_response":      {"false"}, // Thanos
	"deny_partial_response": {"1"},     // VictoriaMetrics cluster
}

// AnswerTooLargeError is the error of a query whose answer is larger than
// MaxAnswerBytes. The API answered; the query is what is wrong, so it fails
// that query only, as a query over the engine's sample limit does.
type AnswerTooLargeError struct{ Limit int64 }

func (e *AnswerTooLargeError) Error() string {
	return fmt.Sprintf("the answer is larger than %d MiB; select fewer series or a shorter range", e.Limit>>20)
}

// WaitError is the error of a query alertd did not send because the data
// source answered 429 or 503 with a Retry-After that has not passed: it
// asked not to be queried until then. The data source counts as down
// meanwhile, so alerts are held rather than resolved.
type WaitError struct {
	// Status is the answer that asked to wait ("429 Too Many Requests").
	Status string
	// Until is when queries go to the data source again.
	Until time.Time
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("not sent: the data source answered %s with Retry-After, and is not queried before %s", e.Status, e.Until.UTC().Format(time.RFC3339))
}

// transport is the round tripper of a Remote's client: it sends the
// address's own query parameters and defaultParams with every request,
// notes a Retry-After of 429 and 503 answers, and bounds answer bodies.
type transport struct {
	next http.RoundTripper
	// params are those of the data source URL. client_golang's API drops
	// them when it falls back from POST to GET (on 403, 405 or 501), so
	// they are added to every request here.
	params url.Values
	// retryAfter is called with a Retry-After a 429 or 503 answer carried.
	retryAfter func(status string, d time.Duration)
	now        func() time.Time
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	q := req.URL.Query()
	for _, ps := range []url.Values{t.params, defaultParams} {
		for k, vs := range ps {
			if !q.Has(k) {
				q[k] = vs
			}
		}
	}
	req.URL.RawQuery = q.Encode()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d := retryAfter(resp.Header.Get("Retry-After"), t.now()); d > 0 {
			t.retryAfter(resp.Status, d)
		}
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: MaxAnswerBytes, tooLarge: resp.ContentLength > MaxAnswerBytes}
	return resp, nil
}

// limitedBody fails the read of an answer past MaxAnswerBytes, and at once
// when its Content-Length says it will be.
type limitedBody struct {
	io.ReadCloser
	left     int64
	tooLarge bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.tooLarge {
		return 0, &AnswerTooLargeError{Limit: MaxAnswerBytes}
	}
	// Read one byte past the limit to tell a body of exactly the limit
	// from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.tooLarge = true
		return 0, &AnswerTooLargeError{Limit: MaxAnswerBytes}
	}
	return n, err
}

// retryAfter parses a Retry-After header, seconds or an HTTP date, into the
// time to wait from now, at most maxRetryAfter; 0 when there is none, or
// it has passed.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// tooLarge tells an answer over MaxAnswerBytes.
func tooLarge(err error) bool {
	var e *AnswerTooLargeError
	return errors.As(err, &e)
}
