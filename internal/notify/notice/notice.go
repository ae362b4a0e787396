// Package notice holds what alertd's integrations (webhook, Slack,
// PagerDuty, Alertmanager) get from the outbox: one notification's alerts,
// group and idempotency key, and the HTTP status rules they share.
package notice

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/alert"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/outbox"
)

// Events of a notification, as in PagerDuty's Events API and Extra's
// "event".
const (
	EventTrigger     = "trigger"
	EventAcknowledge = "acknowledge"
	EventResolve     = "resolve"
	EventEscalate    = "escalate"
	// EventApproval asks an operator to approve an action request.
	EventApproval = "approval"
)

// Extra keys alertd's escalation sets, shown by the integrations.
const (
	ExtraEvent    = "event"
	ExtraIncident = "incident"
	ExtraLevel    = "level"
	// ExtraGroupKey names the group (incident) a notification belongs to
	// when it is not a route's: Slack threads and PagerDuty dedup_keys are
	// derived from it, so escalations join the route's thread and incident.
	ExtraGroupKey = "group_key"
	// ExtraActionRequest is the id of the action request an approval
	// notification asks about.
	ExtraActionRequest = "action_request"
)

// Notice is one notification to one integration.
type Notice struct {
	// Key is the idempotency key; senders put it into the request.
	Key string
	// GroupKey is the aggregation group's key (or ExtraGroupKey's value).
	GroupKey string
	// Data is Alertmanager's template data of the alerts.
	Data *template.Data
	// Alerts are the alerts, for integrations that forward them.
	Alerts []*alert.Alert
	// FiringEndsAt is the endsAt of firing alerts forwarded to an
	// Alertmanager; zero leaves it to its resolve_timeout.
	FiringEndsAt time.Time
	// Extra are annotations of the notification itself: event, incident,
	// level …
	Extra map[string]string
}

// Event is what the notification does: Extra's event, or trigger while an
// alert fires and resolve once all have resolved.
func (n *Notice) Event() string {
	if e := n.Extra[ExtraEvent]; e != "" {
		return e
	}
	if n.Data != nil && n.Data.Status == string("resolved") {
		return EventResolve
	}
	return EventTrigger
}

// Resolved reports whether the notification closes its incident.
func (n *Notice) Resolved() bool { return n.Event() == EventResolve }

// ThreadKey is what identifies the notification's incident across
// notifications: its group key.
func (n *Notice) ThreadKey() string {
	if k := n.Extra[ExtraGroupKey]; k != "" {
		return k
	}
	return n.GroupKey
}

// LabelSet returns the labels of template data (its group or route labels)
// as a label set.
func LabelSet(kv template.KV) model.LabelSet {
	ls := make(model.LabelSet, len(kv))
	for k, v := range kv {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// Hash returns a stable hex digest of s, as Alertmanager hashes group keys
// into PagerDuty dedup keys.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// maxErrorBody bounds how much of a failed response's body goes into errors.
const maxErrorBody = 1 << 10

// CheckResponse classifies a response as the outbox expects: 2xx is
// delivered, unless a redirect turned the POST into a GET (which fails
// for good); 429 (and 503 with Retry-After) retries after the time asked;
// other 5xx and 408 retry with backoff; any other status fails for good.
// The error carries the start of the body.
func CheckResponse(resp *http.Response, now time.Time) error {
	if err := redirectedToGet(resp); err != nil {
		return outbox.Permanent(err)
	}
	if resp.StatusCode/100 == 2 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	err := &outbox.StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	after := amnotify.ParseRetryAfter(resp.Header, now)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || (after > 0 && resp.StatusCode == http.StatusServiceUnavailable):
		return outbox.RetryAfter(after, err)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		return err
	}
	return outbox.Permanent(err)
}

// redirectedToGet returns an error if resp answers a GET that a redirect
// (301, 302, 303) of the POST turned the request into. Go's client, as
// browsers do, follows those with a GET without the body, so the receiver
// got nothing of the notification, whatever answers the GET (a login
// page's 200) says. A 307 or 308 repeats the POST with its body, and is
// fine. The error names where it was redirected by scheme and host only:
// the path or query may hold a secret (a Slack webhook's path does).
func redirectedToGet(resp *http.Response) error {
	req := resp.Request
	if req == nil {
		return nil
	}
	// Back to the first redirect: the request that was sent.
	first := req.Response
	for first != nil && first.Request != nil && first.Request.Response != nil {
		first = first.Request.Response
	}
	if first == nil || first.Request == nil || req.Method == first.Request.Method {
		return nil
	}
	return fmt.Errorf("redirected (%d) to %s://%s, which the client followed with a %s without the notification: configure the URL it redirects to",
		first.StatusCode, req.URL.Scheme, req.URL.Host, req.Method)
}

// TransportError is err of a request that got no response, without the
// URL's secrets (user info, tokens in the query or path).
func TransportError(err error) error {
	return fmt.Errorf("request failed: %w", amnotify.RedactURL(err))
}

// ErrNotConfigured is the error of a message whose receiver or integration
// is no longer configured.
var ErrNotConfigured = errors.New("no longer configured")
