package notify

// TEMPORARY: this SendToReceiver stands in for the one being added to the
// Notifier on another branch, which replaces this file at merge. Keep its
// signature.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/alertmanager/alert"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/notify/webhook"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/notify/alertmanager"
)

// sendAttempts bounds the attempts of each integration in SendToReceiver.
const sendAttempts = 3

// SendToReceiver sends alerts to every integration of the configured
// receiver named receiver, outside routing, grouping and the notification
// log: escalation uses it. key identifies the notification (webhook
// payloads carry it as groupKey) and extra goes in the payload's
// groupLabels. An integration that does not send resolved notifications
// skips alerts that are all resolved. Failed attempts are retried a few
// times while ctx allows; the error joins those of the integrations that
// failed in the end.
func (n *Notifier) SendToReceiver(ctx context.Context, receiver, key string, alerts []*alert.Alert, extra map[string]string) error {
	if n.stopped.Load() {
		return errStopped
	}
	n.mu.Lock()
	p := n.pipeline
	n.mu.Unlock()
	r := p.receivers[receiver]
	if r == nil {
		return fmt.Errorf("unknown receiver %q", receiver)
	}
	type integration struct {
		kind string
		idx  int
		nf   amnotify.Notifier
		rs   amnotify.ResolvedSender
	}
	var its []integration
	for i, wh := range r.WebhookConfigs {
		conf := *wh
		if conf.HTTPConfig == nil {
			hc := commoncfg.DefaultHTTPClientConfig
			conf.HTTPConfig = &hc
		}
		nf, err := webhook.New(&conf, p.tmpl, n.logger.With("receiver", r.Name, "integration", fmt.Sprintf("webhook[%d]", i)))
		if err != nil {
			return fmt.Errorf("receiver %q: webhook_configs[%d]: %w", receiver, i, err)
		}
		its = append(its, integration{integrationWebhook, i, nf, &conf})
	}
	for i, am := range r.AlertmanagerConfigs {
		nf, err := alertmanager.New(am, n.logger.With("receiver", r.Name, "integration", fmt.Sprintf("alertmanager[%d]", i)))
		if err != nil {
			return fmt.Errorf("receiver %q: alertmanager_configs[%d]: %w", receiver, i, err)
		}
		its = append(its, integration{integrationAlertmanager, i, nf, am})
	}

	groupLabels := make(model.LabelSet, len(extra))
	for k, v := range extra {
		groupLabels[model.LabelName(k)] = model.LabelValue(v)
	}
	resolved := true
	for _, a := range alerts {
		if !a.Resolved() {
			resolved = false
		}
	}
	reason := amnotify.ReasonFirstNotification
	if resolved {
		reason = amnotify.ReasonAllAlertsResolved
	}
	ctx = amnotify.WithGroupKey(ctx, key)
	ctx = amnotify.WithReceiverName(ctx, receiver)
	ctx = amnotify.WithGroupLabels(ctx, groupLabels)
	ctx = amnotify.WithNotificationReason(ctx, reason)
	ctx = amnotify.WithNow(ctx, time.Now())

	var errs []error
	for _, it := range its {
		if resolved && !it.rs.SendResolved() {
			continue
		}
		nf := newInstrumented(it.nf, it.kind, n.metrics)
		n.metrics.notifications.WithLabelValues(it.kind).Inc()
		var err error
		for attempt := 1; ; attempt++ {
			v := nf.Notify(ctx, alerts...)
			err = v.Err()
			if err == nil || !v.ShouldRetry() || attempt == sendAttempts {
				if err != nil {
					n.metrics.failed.WithLabelValues(it.kind, v.Reason().String()).Inc()
				}
				break
			}
			select {
			case <-ctx.Done():
				n.metrics.failed.WithLabelValues(it.kind, amnotify.ContextCanceledReason.String()).Inc()
				err = errors.Join(err, ctx.Err())
			case <-time.After(time.Duration(attempt) * time.Second):
				continue
			}
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", it.kind, it.idx, err))
		}
	}
	return errors.Join(errs...)
}
