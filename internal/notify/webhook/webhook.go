// Package webhook delivers Alertmanager's webhook payload (version 4),
// built with Alertmanager's own webhook.Message, from alertd's outbox. Each
// request carries the message's idempotency key in the Idempotency-Key
// header, so a receiver can drop the resend that follows a crash between
// its answer and the outbox recording the delivery.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	amnotify "github.com/prometheus/alertmanager/notify"
	amwebhook "github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/version"

	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

// IdempotencyKeyHeader carries the message's idempotency key.
const IdempotencyKeyHeader = "Idempotency-Key"

// Notifier posts to one webhook_configs entry.
type Notifier struct {
	conf   *amwebhook.WebhookConfig
	tmpl   *template.Template
	client *http.Client
}

// New returns a Notifier for conf; tmpl renders a templated URL and the
// custom payload, as in Alertmanager.
func New(conf *amwebhook.WebhookConfig, tmpl *template.Template) (*Notifier, error) {
	hc := commoncfg.DefaultHTTPClientConfig
	if conf.HTTPConfig != nil {
		hc = *conf.HTTPConfig
	}
	client, err := amnotify.NewClientWithTracing(hc, "webhook")
	if err != nil {
		return nil, fmt.Errorf("couldn't create http client: %w", err)
	}
	return &Notifier{conf: conf, tmpl: tmpl, client: client}, nil
}

// Message returns the payload of n: Alertmanager's webhook message with at
// most max_alerts alerts, or the rendered custom payload.
func (w *Notifier) Message(n *notice.Notice) ([]byte, error) {
	data := n.Data
	var truncated uint64
	if m := w.conf.MaxAlerts; m != 0 && uint64(len(data.Alerts)) > m {
		// Recompute the common labels over the alerts sent, as
		// Alertmanager does.
		d := w.tmpl.Data(data.Receiver, notice.LabelSet(data.GroupLabels), notice.LabelSet(data.RouteLabels), data.NotificationReason, n.Alerts[:m]...)
		template.MarkRouteLabelsRendered(d)
		d.Receiver = data.Receiver
		data, truncated = d, uint64(len(data.Alerts))-m
	}
	msg := &amwebhook.Message{Version: "4", Data: data, GroupKey: n.GroupKey, TruncatedAlerts: truncated}
	if w.conf.Payload != nil {
		var tmplErr error
		text := amnotify.TmplText(w.tmpl, data, &tmplErr)
		rendered, err := template.DeepCopyWithTemplate(w.conf.Payload, func(s string) (string, error) { return text(s), tmplErr })
		if err != nil {
			return nil, fmt.Errorf("failed to render custom payload: %w", err)
		}
		return json.Marshal(rendered)
	}
	return json.Marshal(msg)
}

// Send posts n with its idempotency key.
func (w *Notifier) Send(ctx context.Context, n *notice.Notice) error {
	body, err := w.Message(n)
	if err != nil {
		return outbox.Permanent(err)
	}
	var tmplErr error
	text := amnotify.TmplText(w.tmpl, n.Data, &tmplErr)
	var url string
	if w.conf.URL != "" {
		url = text(string(w.conf.URL))
	} else {
		b, err := os.ReadFile(w.conf.URLFile)
		if err != nil {
			return fmt.Errorf("read url_file: %w", err)
		}
		url = text(strings.TrimSpace(string(b)))
	}
	if tmplErr != nil {
		return outbox.Permanent(fmt.Errorf("failed to template webhook URL: %w", tmplErr))
	}
	if url == "" {
		return outbox.Permanent(errors.New("webhook URL is empty after templating"))
	}
	if w.conf.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, w.conf.Timeout, fmt.Errorf("configured webhook timeout reached (%s)", w.conf.Timeout))
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return outbox.Permanent(notice.TransportError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", version.ComponentUserAgent("alertd"))
	req.Header.Set(IdempotencyKeyHeader, n.Key)
	resp, err := w.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, context.Cause(ctx))
		}
		return notice.TransportError(err)
	}
	defer amnotify.Drain(resp)
	return notice.CheckResponse(resp, time.Now())
}
