package alertd

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// An alert silenced in its Alertmanager fires on there: alertd keeps it
// firing, suppressed, past intake.alertmanager_resolve_timeout, as its
// checks move its end on. With suppression.notify_resolved, the
// notifier's copy of the alert must not time out meanwhile, or the
// receivers told it fired would be told it resolved while it fires.
// When it truly resolves there, they are told once.
func TestAlertmanagerSilencedUpstreamResolutionNotifiedOnce(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, "suppression:\n  notify_resolved: true\n"+
		"intake:\n  resolve_timeout: 1s\n  alertmanager_resolve_timeout: 3s\n  alertmanager_api: {check_interval: 200ms}\n"),
		map[string]string{"rules.yml": "groups: []\n"}, nil)
	am := relayingAM(t, a, true)
	fraud := model.LabelSet{"alertname": "Relayed", "model": "fraud"}

	postToAM(t, am, "fraud")
	h.wait(t, "Relayed", "firing", 30*time.Second)
	code, _ := postV2Silence(t, am.URL, "", time.Now(), time.Now().Add(time.Hour), "on it", v2Matcher("model", "fraud", false))
	require.Equal(t, http.StatusOK, code)
	waitFor(t, a, fraud, inState("suppressed"), "not suppressed")
	// Twice alertmanager_resolve_timeout, and a flush.
	require.Never(t, func() bool { return h.notifications("Relayed", "resolved") > 0 }, 7*time.Second, 50*time.Millisecond,
		"its resolution was notified while it fires, silenced, in the Alertmanager")
	require.Equal(t, "suppressed", waitFor(t, a, fraud, inState("suppressed"), "not suppressed").State)

	postToAM(t, am, "resolved:fraud")
	al := waitFor(t, a, fraud, inState("resolved"), "not resolved")
	require.Contains(t, lastOf(al.History, "intake").Reason, "no longer fires in the Alertmanager at "+am.URL+" for receiver alertd")
	h.wait(t, "Relayed", "resolved", 30*time.Second)
	require.Never(t, func() bool { return h.notifications("Relayed", "resolved") > 1 }, 3*time.Second, 50*time.Millisecond,
		"its resolution was notified more than once")
}
