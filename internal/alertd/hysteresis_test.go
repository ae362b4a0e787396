package alertd

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/prometheustest"
	"github.com/modelmon/modelmon/rules"
)

// A rule with alertd_keep_firing_while, over a real Prometheus: it fires
// above 3, keeps firing at 2 (with that value), and resolves at 0; the
// annotation reaches neither the webhook nor the API's alerts.
func TestKeepFiringWhileLive(t *testing.T) {
	t.Parallel()
	target := newExposition(t, "# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 5\n")
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{target.Addr}})
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": `
groups:
  - name: queue
    rules:
      - alert: QueueTooDeep
        expr: queue_depth > 3
        annotations:
          summary: "Queue {{ $labels.queue }} holds {{ $value }} items"
          alertd_keep_firing_while: queue_depth > 1
`}, func(o *Options) { o.DatasourceURL = prom.URL })

	p := h.wait(t, "QueueTooDeep", "firing", 60*time.Second)
	require.Equal(t, map[string]string{"summary": "Queue orders holds 5 items"}, p.Alerts[0].Annotations)

	// Between the thresholds: still firing, at the new value.
	target.set("# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 2\n")
	require.Eventually(t, func() bool {
		al, ok := a.alert(t, "QueueTooDeep", SourceRule)
		return ok && al.State == "firing" && al.Value == "2"
	}, 60*time.Second, 50*time.Millisecond, "the alert was not kept firing at 2")
	al, _ := a.alert(t, "QueueTooDeep", SourceRule)
	require.Equal(t, "Queue orders holds 2 items", string(al.Annotations["summary"]))
	require.NotContains(t, al.Annotations, rules.KeepFiringWhile)
	// The rule itself still shows its annotation.
	code, body := get(t, a.URL+"/api/v1/rules")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"alertd_keep_firing_while":"queue_depth \u003e 1"`)
	require.Zero(t, h.notifications("QueueTooDeep", "resolved"))

	target.set("# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 0\n")
	p = h.wait(t, "QueueTooDeep", "resolved", 60*time.Second)
	require.Equal(t, map[string]string{"summary": "Queue orders holds 2 items"}, p.Alerts[0].Annotations)
}
