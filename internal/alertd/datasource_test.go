package alertd

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
)

// When the data source answers again, the rules take over the held alert,
// AlertdDatasourceDown resolves, and alertd_datasource_up is 1 again. The
// outage is a proxy in front of a real Prometheus answering 503.
func TestDatasourceRecovers(t *testing.T) {
	t.Parallel()
	prom := prometheustest.Start(t, prometheustest.Options{})
	target, err := url.Parse(prom.URL)
	require.NoError(t, err)
	var down atomic.Bool
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go proxy.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { proxy.Close() })
	dsURL := "http://" + ln.Addr().String()

	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": `
groups:
  - name: always
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
`}, func(o *Options) { o.DatasourceURL = dsURL })
	h.wait(t, "AlwaysFiring", "firing", 60*time.Second)

	down.Store(true)
	h.wait(t, datasourceDownAlert, "firing", 30*time.Second)
	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "AlwaysFiring", SourceRule)
		return ok && slices.Contains(actions(al.History), "datasource/held")
	}, 30*time.Second, 20*time.Millisecond)

	down.Store(false)
	resolved := h.wait(t, datasourceDownAlert, "resolved", 30*time.Second)
	require.Len(t, resolved.Alerts, 1)
	v, _ := metric(t, a.Registry(), "alertd_datasource_up")
	require.Equal(t, 1.0, v)
	own, ok := a.alert(t, datasourceDownAlert, SourceAlertd)
	require.True(t, ok)
	require.Equal(t, "resolved", own.State)
	require.Contains(t, actions(own.History), "intake/resolved")
	al, ok := a.alert(t, "AlwaysFiring", SourceRule)
	require.True(t, ok)
	require.Equal(t, "firing", al.State, "the rule's alert never resolved")
	require.Empty(t, h.matching("AlwaysFiring", "resolved"))
	require.Equal(t, "ok", findRule(t, a.rules(t), "AlwaysFiring").Health)
}
