package alertd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	apiv2 "github.com/prometheus/alertmanager/api/v2"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/util/strutil"
)

// generatorURL links to the expression's table view, as Prometheus's
// rules.SendAlerts does.
func generatorURL(ext *url.URL, expr string) string {
	return strings.TrimSuffix(ext.String(), "/") + strutil.TableLinkForExpression(expr)
}

// readBody reads at most limit bytes; more is an error the caller answers
// with 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, error) {
	if r.Method != http.MethodPost {
		allow := http.MethodPost
		if r.URL.Path == endpointV2Alerts {
			allow = "GET, POST" // GET is apiv2.go's
		}
		w.Header().Set("Allow", allow)
		return nil, http.StatusMethodNotAllowed, errors.New("this endpoint requires a POST request")
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", limit)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("couldn't read request body: %w", err)
	}
	return b, 0, nil
}

// postV2Alerts is Alertmanager's POST /api/v2/alerts: Prometheus servers can
// list alertd under alerting.alertmanagers. As in Alertmanager, valid alerts
// of a batch are kept even when others are rejected, and the answer is 400
// with every reason.
func (a *Alertd) postV2Alerts(w http.ResponseWriter, r *http.Request) {
	b, status, err := readBody(w, r, a.opts.MaxAlertsBody)
	if err != nil {
		a.metrics.intakeInvalid.WithLabelValues(endpointV2Alerts).Inc()
		http.Error(w, err.Error(), status)
		return
	}
	var pas models.PostableAlerts
	if err := json.Unmarshal(b, &pas); err != nil {
		a.metrics.intakeInvalid.WithLabelValues(endpointV2Alerts).Inc()
		http.Error(w, fmt.Sprintf("couldn't parse alerts: %v", err), http.StatusBadRequest)
		return
	}
	a.metrics.intake.WithLabelValues(endpointV2Alerts).Add(float64(len(pas)))
	var errs []error
	// Converted one by one: OpenAPIAlertsToAlerts dereferences every
	// entry, and a null one must not shift the positions in the errors.
	ins := make([]model.Alert, len(pas))
	for i, pa := range pas {
		if pa == nil {
			errs = append(errs, fmt.Errorf("alert %d: null", i))
			continue
		}
		ins[i] = apiv2.OpenAPIAlertsToAlerts(r.Context(), models.PostableAlerts{pa})[0]
	}
	a.intake(w, r, endpointV2Alerts, SourcePrometheus, ins, errs, nil)
}

// postWebhook receives Alertmanager's webhook payload (version 4): an
// Alertmanager can send its notifications into alertd's pipeline.
func (a *Alertd) postWebhook(w http.ResponseWriter, r *http.Request) {
	b, status, err := readBody(w, r, a.opts.MaxAlertsBody)
	if err != nil {
		a.metrics.intakeInvalid.WithLabelValues(endpointWebhook).Inc()
		http.Error(w, err.Error(), status)
		return
	}
	var msg webhook.Message
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&msg); err != nil {
		a.metrics.intakeInvalid.WithLabelValues(endpointWebhook).Inc()
		http.Error(w, fmt.Sprintf("couldn't parse webhook payload: %v", err), http.StatusBadRequest)
		return
	}
	if msg.Version != "4" {
		a.metrics.intakeInvalid.WithLabelValues(endpointWebhook).Inc()
		http.Error(w, fmt.Sprintf("unsupported webhook payload version %q: want \"4\"", msg.Version), http.StatusBadRequest)
		return
	}
	if msg.Data == nil {
		a.metrics.intakeInvalid.WithLabelValues(endpointWebhook).Inc()
		http.Error(w, "webhook payload has no alerts", http.StatusBadRequest)
		return
	}
	a.metrics.intake.WithLabelValues(endpointWebhook).Add(float64(len(msg.Alerts)))
	now := a.opts.Now()
	ins := make([]model.Alert, 0, len(msg.Alerts))
	for _, ta := range msg.Alerts {
		ma := model.Alert{
			Labels: model.LabelSet{}, Annotations: model.LabelSet{},
			StartsAt: ta.StartsAt, EndsAt: ta.EndsAt, GeneratorURL: ta.GeneratorURL,
		}
		for k, v := range ta.Labels {
			ma.Labels[model.LabelName(k)] = model.LabelValue(v)
		}
		for k, v := range ta.Annotations {
			ma.Annotations[model.LabelName(k)] = model.LabelValue(v)
		}
		// A resolved alert without an end time ended when it was delivered.
		if ta.Status == string(model.AlertResolved) && (ma.EndsAt.IsZero() || ma.EndsAt.After(now)) {
			ma.EndsAt = now
		}
		// Alertmanager sends a firing alert's endsAt as zero (it hides an
		// end not reached yet); a zero one gets
		// intake.alertmanager_resolve_timeout below.
		if ta.Status == string(model.AlertFiring) && !ma.EndsAt.IsZero() && !ma.EndsAt.After(now) {
			ma.EndsAt = time.Time{}
		}
		ins = append(ins, ma)
	}
	a.intake(w, r, endpointWebhook, SourceAlertmanager, ins, nil, newRelayNotice(&msg))
}

// intake normalises and validates posted alerts as Alertmanager's API does
// (startsAt defaults to now, a missing endsAt times out after
// resolve_timeout), feeds the valid ones to the pipeline and answers.
//
// An Alertmanager's webhook sends a firing alert again only at its route's
// repeat_interval (4h by default), not every minute as a Prometheus does:
// its alerts time out after alertmanager_resolve_timeout instead, or they
// would resolve between two of its notifications. relay, for a webhook,
// is the group it notifies: the alerts an earlier notification of the
// group held and this one leaves out resolve (see relay.go), unless the
// Alertmanager's API says it silences or inhibits them (upstream.go).
func (a *Alertd) intake(w http.ResponseWriter, r *http.Request, endpoint string, src Source, ins []model.Alert, errs []error, relay *relayNotice) {
	if relay != nil {
		// A check of an Alertmanager's API applies what it learnt with
		// this held, so that an answer given before this delivery does
		// not undo it.
		a.upstream.mu.Lock()
		defer a.upstream.mu.Unlock()
	}
	now := a.opts.Now()
	resolveTimeout := time.Duration(a.cfg.Load().Intake.ResolveTimeout)
	if src == SourceAlertmanager {
		resolveTimeout = time.Duration(a.cfg.Load().Intake.AlertmanagerResolveTimeout)
	}
	valid := make([]*Alert, 0, len(ins))
	held := map[model.Fingerprint]bool{}
	for i := range ins {
		ma := ins[i]
		if ma.Labels == nil {
			continue // a null entry, reported by the caller
		}
		if ma.StartsAt.IsZero() {
			if ma.EndsAt.IsZero() {
				ma.StartsAt = now
			} else {
				ma.StartsAt = ma.EndsAt
			}
		}
		timeout := false
		if ma.EndsAt.IsZero() {
			timeout = true
			ma.EndsAt = now.Add(resolveTimeout)
		}
		for k, v := range ma.Labels {
			if v == "" {
				delete(ma.Labels, k)
			}
		}
		// Invalid or not, the alert is in the notification.
		held[ma.Labels.Fingerprint()] = true
		if err := amalert.Validate(&ma); err != nil {
			errs = append(errs, fmt.Errorf("alert %d (%s): %w", i, ma.Labels, err))
			continue
		}
		al := &Alert{Alert: ma, UpdatedAt: now, Timeout: timeout, Value: math.NaN()}
		if relay != nil {
			// Delivered, firing or resolved: its Alertmanager no longer
			// silences or inhibits it.
			al.relayedAt = now
		}
		if relay != nil && !al.ResolvedAt(now) {
			if relay.group != "" {
				al.relayGroups = []string{relay.group}
			}
			if rs, ok := relay.source(); ok {
				al.relayFrom = []relaySource{rs}
			}
		}
		valid = append(valid, al)
	}
	if len(errs) > 0 {
		a.metrics.intakeInvalid.WithLabelValues(endpoint).Add(float64(len(errs)))
	}
	reason := "posted to " + endpoint + " by " + r.RemoteAddr
	if ua := r.UserAgent(); ua != "" {
		reason += " (" + ua + ")"
	}
	var leftOut []*Alert
	if relay != nil && relay.group != "" && relay.complete {
		var check *upstreamCheck
		if a.upstream.enabled() {
			// Resolved, or silenced or inhibited there: its API says
			// which, off this request's path, and the alerts are held
			// until it does. The check applies its answer after this
			// delivery, whose lock it waits for.
			check = relay.check(now)
		}
		leftOut = a.store.leftOut(r.Context(), now, relay.group, held, check)
		if check != nil {
			if len(leftOut) > 0 {
				a.upstream.checkLeftOut(check)
			}
			leftOut = nil
		}
	}
	if err := a.store.receive(r.Context(), now, src, valid, reason); err != nil {
		http.Error(w, fmt.Sprintf("couldn't store alerts: %v", err), http.StatusInternalServerError)
		return
	}
	if len(leftOut) > 0 {
		if err := a.store.receive(r.Context(), now, src, leftOut, relay.reason()); err != nil {
			http.Error(w, fmt.Sprintf("couldn't store alerts: %v", err), http.StatusInternalServerError)
			return
		}
	}
	// A Prometheus posts its alerts again within a minute, and the loop
	// saves them every tick; an Alertmanager only at repeat_interval, so
	// what it delivers is kept before the delivery is acknowledged.
	if src == SourceAlertmanager {
		if err := a.pushedAlerts.save(now); err != nil {
			a.logger.Error("Failed to save the pushed alerts", "err", err)
		}
	}
	if len(errs) > 0 {
		http.Error(w, errors.Join(errs...).Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}
