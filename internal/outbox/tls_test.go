package outbox

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer a logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A receiver whose certificate the client does not trust is retried (a
// certificate can be fixed), counted under reason tls, not other, and
// logged once at error, not at every retry; once it is trusted, the
// message is delivered.
func TestUntrustedCertificateRetriedCountedAsTLS(t *testing.T) {
	var received atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	// The client trusts the system roots, not the test server's
	// certificate, until trusted is set.
	var trusted atomic.Bool
	untrusted := &http.Client{Transport: &http.Transport{}}
	defer untrusted.CloseIdleConnections()
	var attempts atomic.Int32
	s := SenderFunc(func(ctx context.Context, m *Message) error {
		c := untrusted
		if attempts.Add(1) > 4 {
			trusted.Store(true)
		}
		if trusted.Load() {
			c = srv.Client()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader("{}"))
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("request failed: %w", err)
		}
		resp.Body.Close()
		return nil
	})
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	done := make(chan error, 1)
	ob := run(t, filepath.Join(t.TempDir(), "o.db"), s, func(o *Options) {
		o.InitialBackoff, o.MaxBackoff = time.Millisecond, 2*time.Millisecond
		o.Registerer = reg
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.OnDone = func(_ Message, err error) { done <- err }
	})
	ob.InitializeFor("team", "webhook", 1)
	require.NoError(t, ob.Enqueue(msg("k")))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("not delivered")
	}
	require.Equal(t, int32(1), received.Load())
	require.Equal(t, 4.0, testutil.ToFloat64(ob.metrics.failures.WithLabelValues("team", "webhook", ReasonTLS)))
	require.Equal(t, 0.0, testutil.ToFloat64(ob.metrics.failures.WithLabelValues("team", "webhook", ReasonOther)))
	require.Equal(t, 0.0, testutil.ToFloat64(ob.metrics.failures.WithLabelValues("team", "webhook", ReasonConnection)))
	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "level=ERROR"), out)
	require.Equal(t, 4, strings.Count(out, "x509: certificate signed by unknown authority"), out)
	require.Equal(t, 3, strings.Count(out, `level=DEBUG msg="Delivery failed on TLS again`), out)
	require.NotContains(t, out, "level=WARN", "the retries of a TLS error do not log at every attempt")
}

func TestReasonTLS(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("post: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), ReasonTLS},
		{x509.HostnameError{Host: "a"}, ReasonTLS},
		{x509.CertificateInvalidError{Reason: x509.Expired}, ReasonTLS},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, ReasonTLS},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ReasonTLS},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, ReasonConnection},
	} {
		require.Equal(t, tc.want, Reason(tc.err), "%v", tc.err)
	}
}
