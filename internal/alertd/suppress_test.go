package alertd

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// An alert is held until it has fired for min_firing_duration, then
// released; one that resolves within the hold is never paged.
func TestHoldMinFiringDuration(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, `
suppression:
  min_firing_duration: 2s
`), map[string]string{"rules.yml": "groups: []\n"}, nil)

	postAlert(t, a, `{"alertname":"Brief"}`)
	postAlert(t, a, `{"alertname":"Blip"}`)
	brief := waitAlert(t, a, model.LabelSet{"alertname": "Brief"})
	require.Equal(t, "suppressed", brief.State)
	require.Equal(t, "hold/suppressed", actions(brief.History)[len(brief.History)-1])
	code, body := post(t, a.URL+"/api/v2/alerts", "application/json",
		fmt.Sprintf(`[{"labels":{"alertname":"Blip"},"endsAt":%q}]`, time.Now().Add(-time.Millisecond).UTC().Format(time.RFC3339Nano)))
	require.Equal(t, http.StatusOK, code, body)

	h.wait(t, "Brief", "firing", 30*time.Second)
	brief = waitAlert(t, a, brief.Labels)
	require.Equal(t, "firing", brief.State)
	require.Contains(t, actions(brief.History), "pipeline/released")
	require.Empty(t, h.matching("Blip", "firing"), "an alert that resolved within the hold was paged")
	require.Empty(t, h.matching("Blip", "resolved"))
}

// An alert that keeps firing and resolving starts flapping at
// start_changes state changes in the window and is kept from
// notifications; the flap state survives a restart; once the changes age
// out of the window it stops flapping and is released to the notifier.
func TestFlapping(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	dir := t.TempDir()
	writeFile(t, dir, "alertd.yml", routes(h, nil, `
suppression:
  flapping: {window: 4s, start_changes: 4, stop_changes: 1}
`))
	writeFile(t, dir, "rules.yml", "groups: []\n")
	o, logs := newOptions(t, dir)
	a := start(t, dir, o, logs)
	startsAt := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	send := func(a *testAlertd, resolved bool) {
		t.Helper()
		end := ""
		if resolved {
			end = fmt.Sprintf(`,"endsAt":%q`, time.Now().Add(-time.Millisecond).UTC().Format(time.RFC3339Nano))
		}
		code, body := post(t, a.URL+"/api/v2/alerts", "application/json", fmt.Sprintf(`[{"labels":{"alertname":"Flappy"},"startsAt":%q%s}]`, startsAt, end))
		require.Equal(t, http.StatusOK, code, body)
	}
	// Firing, then four changes: resolved, firing, resolved, firing.
	send(a, false)
	for i := range 4 {
		send(a, i%2 == 0)
	}
	flappy := waitAlert(t, a, model.LabelSet{"alertname": "Flappy"})
	require.Equal(t, "suppressed", flappy.State)
	// (The notification of its first firing may be recorded after the
	// flap decision: take the flap stage's latest.)
	last := lastOf(flappy.History, "flap")
	require.Equal(t, "suppressed", last.Action)
	require.Contains(t, last.Reason, "flapping: 4 state changes in the last 4s")

	// Restart in the middle of the flap window: still flapping, and not
	// paged. The alert may have been paged before it started flapping.
	// Delivery is at least once: a delivery in flight at the stop that the
	// shutdown grace cut off is sent again with the same key. So once the
	// outbox is empty the receiver must have had exactly the distinct
	// notifications the first alertd created: a page of the flapping alert
	// would be one more.
	require.NoError(t, a.Stop())
	created, ok := metric(t, a.Registry(), "alertd_outbox_messages_enqueued_total", "receiver", "hook", "integration", "webhook")
	require.True(t, ok)
	b := start(t, dir, o, logs)
	send(b, false)
	flappy = waitAlert(t, b, model.LabelSet{"alertname": "Flappy"})
	require.Equal(t, "suppressed", flappy.State)
	require.Eventually(t, func() bool {
		depth, ok := metric(t, b.Registry(), "alertd_outbox_queue_depth", "receiver", "hook", "integration", "webhook", "entry", "0")
		return ok && depth == 0
	}, 30*time.Second, 20*time.Millisecond, "the outbox kept messages from before the restart")
	require.Equal(t, int(created), h.notifications("Flappy", ""), "a flapping alert was paged")

	// The changes age out of the window: it stops flapping and is released.
	require.Eventually(t, func() bool {
		al, ok := b.alert(t, "Flappy", SourcePrometheus)
		return ok && al.State == "firing" && slices.Contains(actions(al.History), "pipeline/released")
	}, 30*time.Second, 50*time.Millisecond)
	// Whether the receiver hears of it again is the notifier's call: it
	// re-sends only what changed since its last notification of the group.
}
