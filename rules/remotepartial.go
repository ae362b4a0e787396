package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// PartialError is the error of a query whose answer lacks part of the data.
// Rules cannot tell from such an answer whether their alerts still hold: a
// sum over what is left, or an absent() of what is missing, would fire or
// resolve alerts that are not so. So the query fails, and the data source
// counts as down (unavailable), as when it does not answer: callers hold
// alerts rather than resolve them.
//
// Two stores answer so:
//   - a Thanos Query with a store that failed, asked with
//     partial_response=false: its proxy aborts the query (gRPC code Aborted,
//     pkg/store/proxy.go) and the API answers 422 errorType execution with
//     "... rpc error: code = Aborted desc = <the store's error>". Err is
//     that answer. A store that refused the query for its own limits
//     aborts it the same way, but that is the query's error (thanosLimit).
//   - a VictoriaMetrics vmselect with vmstorage nodes that did not answer,
//     when it ignores deny_partial_response=1 (-search.denyPartialResponse
//     off in an older version, or a proxy that drops the parameter): it
//     answers success with "isPartial":true. Err is nil.
type PartialError struct {
	Err error
}

func (e *PartialError) Error() string {
	if e.Err == nil {
		return "the data source answered with part of the data (isPartial: some of its storage nodes did not answer); the answer is not used"
	}
	return "the data source refused to answer with part of the data (a store failed, partial_response=false): " + e.Err.Error()
}

func (e *PartialError) Unwrap() error { return e.Err }

// thanosAborted is how a Thanos Query's error says that a store failed and
// the query was aborted rather than answered without it: the status of its
// proxy's Series call, status.Error(codes.Aborted, …), as gRPC prints it. A
// 422 execution error without it (a PromQL error, many-to-many matching, a
// sample limit) is about the query, and fails that rule only; so is one
// with it for a store's limit (thanosLimit).
const thanosAborted = "rpc error: code = Aborted desc = "

// thanosLimit is how a Thanos store says that a query asked it for more
// than its limits allow: its Limiter's error (pkg/store/limiter.go,
// Limiter.Reserve: "limit %v violated (got %v)"), wrapped by a store
// gateway as "exceeded series limit: ", "exceeded chunks limit: " or
// "exceeded bytes limit while fetching ...: " (pkg/store/bucket.go:
// --store.limits.request-series, --store.limits.request-samples,
// --store.grpc.downloaded-bytes-limit), and by a sidecar, receiver or
// ruler as "failed to send series: " or "failed to send samples: "
// (limitedServer, the same --store.limits.* flags). The querier's proxy
// aborts the query with it as with a store that is down, but the store
// answered: the query is too big, and another evaluation gets the same
// answer. A store's "too many pending series requests"
// (--store.limits.pending-requests) is not: that store is overloaded, and
// the query counts as refused partial data, as for a store that is down.
var thanosLimit = regexp.MustCompile(`limit [0-9]+ violated \(got [0-9]+\)`)

// refusedPartial returns a PartialError for an answer of Thanos that
// refused partial data, and err otherwise. A refusal for a store's limit
// is the query's error: it fails that rule, and the data source stays up.
func refusedPartial(err error) error {
	var ae *v1.Error
	if !errors.As(err, &ae) || ae.Type != v1.ErrExec || !strings.Contains(ae.Msg, thanosAborted) {
		return err
	}
	if thanosLimit.MatchString(ae.Msg) {
		return fmt.Errorf("a Thanos store refused the query for its limits; select fewer series or a shorter range: %w", err)
	}
	return &PartialError{Err: err}
}

// partialKey is the context key of the *bool a request's partialClient.Do
// sets when the answer says isPartial.
type partialKey struct{}

// partialClient is the API client of a Remote: client_golang's API drops
// the fields of an answer it does not know, VictoriaMetrics's isPartial
// among them, so it is read here from the body.
type partialClient struct{ api.Client }

// Do implements api.Client.
func (c partialClient) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	resp, body, err := c.Client.Do(ctx, req)
	if err == nil && resp.StatusCode/100 == 2 && answeredPartial(body) {
		if p, ok := ctx.Value(partialKey{}).(*bool); ok {
			*p = true
		}
	}
	return resp, body, err
}

// answeredPartial tells an answer with "isPartial":true at its top level.
// VictoriaMetrics writes it right after "status", so the rest of the body,
// which client_golang decodes anyway, is not read again.
func answeredPartial(body []byte) bool {
	if !bytes.Contains(body, []byte(`"isPartial"`)) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return false
		}
		if k == "isPartial" {
			var partial bool
			return dec.Decode(&partial) == nil && partial
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// partialWarning is the warning an isPartial answer is used with when the
// data source URL allows partial answers (deny_partial_response=0).
const partialWarning = "isPartial: the answer lacks the data of storage nodes that did not answer"

// allowsPartial tells whether the data source URL's own parameters ask
// VictoriaMetrics for partial answers (deny_partial_response=0), read as
// vmselect reads the parameter. Thanos's partial_response=true needs
// nothing: Thanos then answers with warnings, not isPartial.
func allowsPartial(params url.Values) bool {
	if !params.Has("deny_partial_response") {
		return false
	}
	switch strings.ToLower(params.Get("deny_partial_response")) {
	case "", "0", "f", "false", "no":
		return true
	}
	return false
}
