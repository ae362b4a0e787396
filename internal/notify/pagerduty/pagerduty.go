// Package pagerduty sends PagerDuty Events API v2 events from alertd's
// outbox: trigger while a group (incident) fires, acknowledge when it is
// acknowledged and resolve when it resolves, all with one dedup_key per
// group, so repeats and escalations update the same PagerDuty incident and
// a resend after a crash changes nothing. The wire types are
// go-pagerduty's; the request is made here to keep the configured URL as
// is, read Retry-After and classify failures (429 retries after the time
// asked, other 4xx fail for good, 5xx retry).
package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/PagerDuty/go-pagerduty"
	amnotify "github.com/prometheus/alertmanager/notify"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/version"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

// maxSummary is the Events API's limit of a summary, in characters.
const maxSummary = 1024

// maxEvent is the Events API's limit of an event, 512 KB, in bytes as
// Alertmanager takes it. PagerDuty refuses a larger event.
const maxEvent = 512000

// detailsRemoved replaces the custom_details of an event over maxEvent,
// in Alertmanager's words.
const detailsRemoved = "Custom details have been removed because the original event exceeds the maximum size of 512kB"

// fieldsCut says, beside detailsRemoved, what else was cut of an event
// still over maxEvent without its custom_details.
const fieldsCut = "Links have been removed, and source, component, group and class cut to 1024 characters, because the event without custom details still exceeds 512kB"

// Notifier sends events for one pagerduty_configs entry.
type Notifier struct {
	conf   *alertconfig.PagerDutyConfig
	client *http.Client
}

// New returns a Notifier for conf.
func New(conf *alertconfig.PagerDutyConfig) (*Notifier, error) {
	hc := commoncfg.DefaultHTTPClientConfig
	if conf.HTTPConfig != nil {
		hc = *conf.HTTPConfig
	}
	client, err := amnotify.NewClientWithTracing(hc, "pagerduty")
	if err != nil {
		return nil, fmt.Errorf("couldn't create http client: %w", err)
	}
	return &Notifier{conf: conf, client: client}, nil
}

// DedupKey is the dedup_key of a notification's incident: the hash of its
// group key, as Alertmanager's PagerDuty integration makes it.
func DedupKey(n *notice.Notice) string { return notice.Hash(n.ThreadKey()) }

// Event returns the event n sends.
func (p *Notifier) Event(n *notice.Notice) *pagerduty.V2Event {
	// The Events API knows three actions and refuses any other with a
	// 400: every event but an acknowledgement and a resolve (a first
	// notification, an escalation, a repeat of the chain, an approval
	// request) pages.
	action := n.Event()
	if action != notice.EventAcknowledge && action != notice.EventResolve {
		action = notice.EventTrigger
	}
	e := &pagerduty.V2Event{
		RoutingKey: string(p.conf.RoutingKey),
		Action:     action,
		DedupKey:   DedupKey(n),
		Client:     "alertd",
		ClientURL:  n.Data.ExternalURL,
	}
	if action != notice.EventTrigger {
		// PagerDuty ignores the payload of acknowledge and resolve.
		return e
	}
	first := n.Data.Alerts[0]
	for _, a := range n.Data.Alerts {
		if a.Status == "firing" {
			first = a
			break
		}
	}
	ann := func(k string) string {
		if v := n.Data.CommonAnnotations[k]; v != "" {
			return v
		}
		return first.Annotations[k]
	}
	details := map[string]any{
		"firing":             len(n.Data.Alerts.Firing()),
		"resolved":           len(n.Data.Alerts.Resolved()),
		"num_alerts":         len(n.Data.Alerts),
		"group_labels":       n.Data.GroupLabels,
		"common_labels":      n.Data.CommonLabels,
		"common_annotations": n.Data.CommonAnnotations,
	}
	for _, k := range []string{"category", "priority", "action", "false_positive_probability", "explanation", "value"} {
		if v := ann(k); v != "" {
			details[k] = v
		}
	}
	for k, v := range n.Extra {
		if k != notice.ExtraGroupKey {
			details[k] = v
		}
	}
	e.Payload = &pagerduty.V2Payload{
		Summary:   truncate(summary(n), maxSummary),
		Source:    p.source(n),
		Severity:  p.severity(ann("priority")),
		Timestamp: first.StartsAt.UTC().Format(time.RFC3339),
		Component: n.Data.CommonLabels["model"],
		Group:     n.Data.CommonLabels["team"],
		Class:     ann("category"),
		Details:   details,
	}
	var links []any
	if first.GeneratorURL != "" {
		links = append(links, map[string]string{"href": first.GeneratorURL, "text": "Source"})
	}
	if n.Data.ExternalURL != "" {
		links = append(links, map[string]string{"href": strings.TrimRight(n.Data.ExternalURL, "/") + "/api/v1/alerts?fingerprint=" + first.Fingerprint, "text": "Alert in alertd"})
	}
	if r := ann("runbook_url"); r != "" {
		links = append(links, map[string]string{"href": r, "text": "Runbook"})
	}
	e.Links = links
	return e
}

func (p *Notifier) severity(priority string) string {
	if s := p.conf.SeverityByPriority[priority]; s != "" {
		return s
	}
	return p.conf.Severity
}

func (p *Notifier) source(n *notice.Notice) string {
	if p.conf.Source != "" {
		return p.conf.Source
	}
	for _, l := range []string{"model", "instance", "job"} {
		if v := n.Data.CommonLabels[l]; v != "" {
			return v
		}
	}
	return "alertd"
}

// summary is "[FIRING:2] ModelDrift model=fraud: <summary annotation>".
func summary(n *notice.Notice) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s:%d] %s", strings.ToUpper(n.Data.Status), len(n.Data.Alerts.Firing()), n.Data.CommonLabels["alertname"])
	keys := make([]string, 0, len(n.Data.GroupLabels))
	for k := range n.Data.GroupLabels {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, n.Data.GroupLabels[k])
	}
	if s := n.Data.CommonAnnotations["summary"]; s != "" {
		b.WriteString(": " + s)
	}
	return b.String()
}

// truncate cuts s to n characters (runes, as PagerDuty counts them and
// Alertmanager cuts its summary), the last being an ellipsis; never inside
// a character, which would leave invalid UTF-8 or U+FFFD in the summary.
func truncate(s string, n int) string {
	t, _ := amnotify.TruncateInRunes(s, n)
	return t
}

// Send posts n's event. An event over PagerDuty's size limit (long
// annotations) goes without its custom_details, as in Alertmanager, and if
// still over it without its links and with its other fields cut, rather
// than being refused for good.
func (p *Notifier) Send(ctx context.Context, n *notice.Notice) error {
	e := p.Event(n)
	body, err := json.Marshal(e)
	if err == nil && len(body) > maxEvent && e.Payload != nil {
		e.Payload.Details = map[string]any{"error": detailsRemoved}
		body, err = json.Marshal(e)
		if err == nil && len(body) > maxEvent {
			// Alertmanager stops there, and PagerDuty refuses the event.
			// What is left to be long comes from alerts (a runbook_url, a
			// generator URL, a label in source or component): without the
			// links, and with those fields cut as the summary is, the event
			// is a few KB.
			e.Links = nil
			for _, f := range []*string{&e.Payload.Source, &e.Payload.Component, &e.Payload.Group, &e.Payload.Class} {
				*f = truncate(*f, maxSummary)
			}
			e.Payload.Details = map[string]any{"error": detailsRemoved, "truncated": fieldsCut}
			body, err = json.Marshal(e)
		}
	}
	if err != nil {
		return outbox.Permanent(fmt.Errorf("couldn't encode event: %w", err))
	}
	if p.conf.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(p.conf.Timeout))
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.conf.URL, bytes.NewReader(body))
	if err != nil {
		return outbox.Permanent(notice.TransportError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", version.ComponentUserAgent("alertd"))
	resp, err := p.client.Do(req)
	if err != nil {
		return notice.TransportError(err)
	}
	defer amnotify.Drain(resp)
	return notice.CheckResponse(resp, time.Now())
}
