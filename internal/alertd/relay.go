package alertd

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/common/model"
)

// An Alertmanager whose webhook receiver has send_resolved: false never
// tells alertd that an alert resolved: its RetryStage drops resolved
// alerts from what it sends, and sends nothing at all once a group has
// only resolved ones. Its firing alerts come without an end time (it hides
// an end not reached yet), so without more they would last
// intake.alertmanager_resolve_timeout (8h5m).
//
// But every notification of a group lists all the alerts of the group that
// still fire there (its dispatcher flushes the whole aggregation group;
// the webhook cuts the list only at max_alerts, and then says how many it
// cut in truncatedAlerts). So an alert that one notification of a group
// held firing and a later notification of the same group leaves out no
// longer fires there: it resolved, or the Alertmanager now silences or
// inhibits it, and either way it will not say more about it. alertd
// resolves it then, unless the Alertmanager's API says it silences or
// inhibits it (upstream.go). With send_resolved: true the resolved alert
// is in the later notification, resolved, and resolves as before.
//
// A group is one Alertmanager (its externalURL), one of its receivers and
// one of its groupKeys: two Alertmanagers with the same routes, relaying
// different alerts, keep apart. An alert may be in several groups (routes
// with continue: true); it resolves once every group that held it left
// it out. The groups are kept with the alert in pushed_alerts.json, so a
// restart between two notifications changes nothing.
//
// Left out of a notification, an alert may have resolved, or the
// Alertmanager may now silence or inhibit it; and the last alert of a
// group to resolve is left out of nothing, as the Alertmanager then sends
// nothing. The webhook can't tell alertd more: its API can, which
// upstream.go asks.
//
// An Alertmanager that restarted holds no alerts until its Prometheus
// servers send them again (within their resend delay, a minute by
// default); a notification of a group in that minute, which its
// notification log makes unlikely, would resolve here the alerts it lacks,
// and its next one would fire them again.

// relayNotice is what an Alertmanager's webhook says about the group it
// notifies.
type relayNotice struct {
	// group identifies the group (relayGroup); empty when the payload
	// names no group.
	group                           string
	groupKey, receiver, externalURL string
	// complete is set when the notification lists every alert of its
	// group that fires: none was cut by max_alerts.
	complete bool
}

// newRelayNotice reads the group of an Alertmanager's webhook.
func newRelayNotice(msg *webhook.Message) *relayNotice {
	n := &relayNotice{groupKey: msg.GroupKey, receiver: msg.Receiver, externalURL: msg.ExternalURL,
		complete: msg.TruncatedAlerts == 0 && len(msg.Alerts) > 0}
	if msg.GroupKey != "" {
		n.group = relayGroup(msg.ExternalURL, msg.Receiver, msg.GroupKey)
	}
	return n
}

// relayGroup is the id of an Alertmanager's notification group, as alertd
// keeps it with the alerts: a hash of the Alertmanager's external URL, the
// receiver and the group key.
func relayGroup(externalURL, receiver, groupKey string) string {
	return model.LabelSet{"external_url": model.LabelValue(externalURL), "receiver": model.LabelValue(receiver),
		"group_key": model.LabelValue(groupKey)}.Fingerprint().String()
}

// reason is the history's reason of an alert the notification left out.
func (n *relayNotice) reason() string {
	return leftOutReason(n.externalURL, n.receiver, n.groupKey)
}

// leftOutReason is the history's reason of an alert that a notification
// of the group groupKey to the receiver of the Alertmanager at
// externalURL left out.
func leftOutReason(externalURL, receiver, groupKey string) string {
	return fmt.Sprintf("left out of a later notification of its group %s by the Alertmanager at %s (receiver %s), "+
		"which lists every alert of the group that still fires there", groupKey, externalURL, receiver)
}

// check returns the check of the Alertmanager's API, at now, about the
// alerts the notification leaves out.
func (n *relayNotice) check(now time.Time) *upstreamCheck {
	return &upstreamCheck{URL: n.externalURL, Receiver: n.receiver, GroupKey: n.groupKey, At: now}
}

// leftOut returns, resolved at now, the firing alerts relayed by an
// Alertmanager that an earlier notification of group held and the
// notification holding held does not, unless another group's latest
// notification still holds them. Each such alert forgets the group. With
// a check of the Alertmanager's API to come (not nil), the alerts are
// held for it: neither notified firing nor resolved until it answers.
func (s *store) leftOut(ctx context.Context, now time.Time, group string, held map[model.Fingerprint]bool, check *upstreamCheck) []*Alert {
	defer s.commit()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Alert
	for fp, a := range s.alerts {
		if a.Source != SourceAlertmanager || held[fp] || a.ResolvedAt(now) || !slices.Contains(a.relayGroups, group) {
			continue
		}
		a.relayGroups = slices.DeleteFunc(slices.Clone(a.relayGroups), func(g string) bool { return g == group })
		s.pushedGen++
		if len(a.relayGroups) > 0 {
			continue
		}
		if check != nil {
			a.awaiting = check
			s.runStages(ctx, now, a, true)
		}
		out = append(out, a.resolvedCopy(now))
	}
	slices.SortFunc(out, func(x, y *Alert) int { return cmp.Compare(x.Labels.Fingerprint(), y.Labels.Fingerprint()) })
	return out
}

// relaySource is an Alertmanager, by the external URL its webhook
// names, and the receiver whose webhook relayed an alert to alertd.
type relaySource struct {
	ExternalURL string `json:"externalURL"`
	Receiver    string `json:"receiver"`
}

// source returns the Alertmanager and receiver of the notification; ok
// is false when the payload names no Alertmanager.
func (n *relayNotice) source() (relaySource, bool) {
	return relaySource{ExternalURL: n.externalURL, Receiver: n.receiver}, n.externalURL != ""
}

// mergeOnce returns old with the items of add it lacks appended: the
// relaying groups or sources of both, each once.
func mergeOnce[T comparable](old, add []T) []T {
	out := slices.Clone(old)
	for _, x := range add {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
