package exporter

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// HTTP/1.1 edge cases: the proxy stays transparent, or does what README.md
// says it does instead.

// okUpstream is a raw model server that answers every request 200 "ok".
func okUpstream(t *testing.T) *rawUpstream {
	return newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
}

// The model server gets the client's Host as sent (its case kept), and the
// upstream's host:port only when the client sent none (HTTP/1.0).
func TestProxyHost(t *testing.T) {
	up := okUpstream(t)
	e := startExporter(t, up.URL(), nil)
	rawRoundTrip(t, e.ProxyAddr(), "GET /a HTTP/1.1\r\nHost: model.example:8080\r\n\r\n")
	rawRoundTrip(t, e.ProxyAddr(), "GET /b HTTP/1.1\r\nHost: Model.Example\r\n\r\n")
	rawRoundTrip(t, e.ProxyAddr(), "GET /c HTTP/1.0\r\n\r\n")
	got := up.received()
	require.Len(t, got, 3)
	require.Equal(t, []string{"Host: model.example:8080"}, got[0].headers)
	require.Equal(t, []string{"Host: Model.Example"}, got[1].headers)
	require.Equal(t, "GET /c HTTP/1.0", got[2].start)
	require.Equal(t, []string{"Host: " + strings.TrimPrefix(up.URL(), "http://")}, got[2].headers)
}
