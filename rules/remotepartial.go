package rules

import (
	"errors"
	"strings"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// PartialError is the error of a query whose answer lacks part of the data.
// Rules cannot tell from such an answer whether their alerts still hold: a
// sum over what is left, or an absent() of what is missing, would fire or
// resolve alerts that are not so. So the query fails, and the data source
// counts as down (unavailable), as when it does not answer: callers hold
// alerts rather than resolve them.
//
// A Thanos Query with a store that failed, asked with
// partial_response=false, answers so: its proxy aborts the query (gRPC code
// Aborted, pkg/store/proxy.go) and the API answers 422 errorType execution
// with "... rpc error: code = Aborted desc = <the store's error>". Err is
// that answer.
type PartialError struct {
	Err error
}

func (e *PartialError) Error() string {
	return "the data source refused to answer with part of the data (a store failed, partial_response=false): " + e.Err.Error()
}

func (e *PartialError) Unwrap() error { return e.Err }

// thanosAborted is how a Thanos Query's error says that a store failed and
// the query was aborted rather than answered without it: the status of its
// proxy's Series call, status.Error(codes.Aborted, …), as gRPC prints it. A
// 422 execution error without it (a PromQL error, many-to-many matching, a
// sample limit) is about the query, and fails that rule only.
const thanosAborted = "rpc error: code = Aborted desc = "

// refusedPartial returns a PartialError for an answer of Thanos that
// refused partial data, and err otherwise.
func refusedPartial(err error) error {
	var ae *v1.Error
	if errors.As(err, &ae) && ae.Type == v1.ErrExec && strings.Contains(ae.Msg, thanosAborted) {
		return &PartialError{Err: err}
	}
	return err
}
