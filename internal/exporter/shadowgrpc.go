package exporter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelmon/modelmon/collector"
)

// The gRPC proxy's unary prediction calls go to the shadow
// (--shadow.grpc-upstream) as the HTTP proxy's requests do: the handler
// decides whether a call is sampled and captures its method and metadata
// with its messages; the parser hands them over once it has parsed the
// model's answer; a sender makes the same call to the shadow and compares
// the answers. The requests of streamed calls go on streams of their own
// (shadowstream.go).

// shadowCalls hold a sampled call's method and metadata while the gRPC
// handler captures them, so that sampling allocates nothing of its own.
var shadowCalls = sync.Pool{New: func() any { return new([]byte) }}

// appendShadowCall appends a call's method and the metadata of md that
// goes to the shadow to b, each as its length (a uvarint) and its bytes:
// the method, then a key and a value for each value. What grpc-go owns
// stays out: pseudo-headers (the shadow gets its own :authority, as an HTTP
// shadow its own Host), Content-Type, User-Agent, TE and the grpc-*
// headers the protocol reserves.
func appendShadowCall(b []byte, method string, md metadata.MD) []byte {
	b = appendString(b, method)
	for k, vs := range md {
		if grpcOwned(k) {
			continue
		}
		for _, v := range vs {
			b = appendString(appendString(b, k), v)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// grpcOwned reports whether the metadata key k is grpc-go's to set on a
// call, not the client's.
func grpcOwned(k string) bool {
	switch {
	case strings.HasPrefix(k, ":"), strings.HasPrefix(k, "grpc-"):
		return true
	}
	switch k {
	case "content-type", "user-agent", "te", "host":
		return true
	}
	return false
}

// errShadowCall is a mirrored call's method and metadata that do not read
// back; it would be a bug.
var errShadowCall = errors.New("the call's method and metadata could not be read back")

// readShadowCall reads back what appendShadowCall wrote.
func readShadowCall(b []byte) (method string, md metadata.MD, err error) {
	next := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	method, ok := next()
	if !ok {
		return "", nil, errShadowCall
	}
	md = metadata.MD{}
	for len(b) > 0 {
		k, ok := next()
		if !ok {
			return "", nil, errShadowCall
		}
		v, ok := next()
		if !ok {
			return "", nil, errShadowCall
		}
		md[k] = append(md[k], v)
	}
	return method, md, nil
}

// call makes a mirrored unary call to the gRPC shadow (hdr its method and
// metadata, msg its request message) within --shadow.timeout, and compares
// the answer.
func (sd *shadowSender) call(j *shadowJob, hdr, msg []byte) {
	s, m := sd.s, j.model
	method, md, err := readShadowCall(hdr)
	if err != nil {
		s.metrics.Errors.WithLabelValues(m.name, collector.ErrorInvalidResponse).Inc()
		s.logger.Error("Could not mirror a call", "model", m.name, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), s.timeout)
	defer cancel()
	ctx = withRetries(ctx, s.metrics.Retries.WithLabelValues(m.name))
	s.metrics.Requests.WithLabelValues(m.name).Inc()
	start := time.Now()
	var resp []byte
	err = s.conn.Invoke(ctx, method, &msg, &resp)
	took := time.Since(start)
	if err != nil {
		reason, answered := shadowCallReason(err, s.q.maxBody)
		if answered {
			s.metrics.Duration.WithLabelValues(m.name).Observe(took.Seconds())
		}
		sd.fail(m, reason, fmt.Errorf("the shadow's gRPC call failed: %w", err))
		return
	}
	s.metrics.Duration.WithLabelValues(m.name).Observe(took.Seconds())
	sd.compare(j, msg, resp, answerTiming{})
}

// shadowCallReason is the reason a mirrored gRPC call that failed counts as
// in modelmon_shadow_errors_total, and whether the shadow answered it (with
// an error status): timeout past --shadow.timeout; connection when the
// shadow was not reached (grpc-go's UNAVAILABLE, which a shadow that is
// there but not ready answers too); invalid_response for an answer larger
// than the parser takes (maxBody, --capture.max-body-size), as over HTTP;
// any other status as the gRPC proxy counts the model server's
// (grpcHTTPStatus), upstream_4xx or upstream_5xx.
func shadowCallReason(err error, maxBody int) (reason string, answered bool) {
	st := status.Convert(err)
	switch code := st.Code(); {
	case code == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		return collector.ErrorTimeout, false
	case code == codes.Unavailable:
		return collector.ErrorConnection, false
	case grpcTooLarge(err, maxBody): // grpc-go's own, on receiving the answer
		return collector.ErrorInvalidResponse, true
	case grpcHTTPStatus(code) >= 500:
		return collector.ErrorUpstream5xx, true
	}
	return collector.ErrorUpstream4xx, true
}
