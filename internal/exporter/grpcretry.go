package exporter

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/stats"
)

// transparentRetries is the stats.Handler that counts grpc-go's
// transparent retries of a client connection's calls: those it makes on
// its own, whatever the options (dialGRPC), of a call the server did not
// take: refused with REFUSED_STREAM, past the last stream a GOAWAY let
// through, or on a connection that closed before the call left. Only a
// stats.Handler sees them, in the stats.Begin of each attempt. A retry
// counts in the counter of its call's context (withRetries: the shadow's
// calls, in modelmon_shadow_retries_total by model), else in c when not
// nil (the gRPC proxy's, in modelmon_upstream_retries_total, as the HTTP
// proxy's round trip counts its retries there).
type transparentRetries struct{ c prometheus.Counter }

// retriesKey is the context key of a call's retry counter.
type retriesKey struct{}

// withRetries is ctx, its calls' transparent retries counted in c.
func withRetries(ctx context.Context, c prometheus.Counter) context.Context {
	return context.WithValue(ctx, retriesKey{}, c)
}

func (h transparentRetries) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (h transparentRetries) HandleRPC(ctx context.Context, s stats.RPCStats) {
	b, ok := s.(*stats.Begin)
	if !ok || !b.IsTransparentRetryAttempt {
		return
	}
	if c, ok := ctx.Value(retriesKey{}).(prometheus.Counter); ok {
		c.Inc()
	} else if h.c != nil {
		h.c.Inc()
	}
}

func (transparentRetries) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (transparentRetries) HandleConn(context.Context, stats.ConnStats) {}
