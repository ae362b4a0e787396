// Package alertmanager forwards alerts to an Alertmanager's API v2, so that an
// existing Alertmanager (or cluster) does the final grouping, silencing and
// notification. It implements Alertmanager's own notify.Notifier interface and
// leaves retries to notify.RetryStage.
package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/alertmanager/notify"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/version"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

// AlertsPath is where an Alertmanager accepts alerts, relative to its URL.
const AlertsPath = "/api/v2/alerts"

// maxErrorBody bounds how much of a failed response's body goes into the error.
const maxErrorBody = 1 << 10

// Notifier posts a group's alerts to one Alertmanager.
type Notifier struct {
	url     string
	timeout time.Duration
	client  *http.Client
	logger  *slog.Logger
	retrier *notify.Retrier
}

// New returns a Notifier for conf. conf.HTTPConfig may be nil (no
// authentication, default TLS). A nil logger discards logs.
func New(conf *alertconfig.AlertmanagerConfig, l *slog.Logger, httpOpts ...commoncfg.HTTPClientOption) (*Notifier, error) {
	u, err := url.Parse(conf.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may carry credentials: don't repeat it.
		return nil, fmt.Errorf("invalid alertmanager url: want http(s)://host[:port]")
	}
	u.Path = strings.TrimRight(u.Path, "/") + AlertsPath
	httpConfig := commoncfg.DefaultHTTPClientConfig
	if conf.HTTPConfig != nil {
		httpConfig = *conf.HTTPConfig
	}
	client, err := notify.NewClientWithTracing(httpConfig, "alertmanager", httpOpts...)
	if err != nil {
		return nil, fmt.Errorf("couldn't create http client: %w", err)
	}
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Notifier{
		url:     u.String(),
		timeout: time.Duration(conf.Timeout),
		client:  client,
		logger:  l,
		// Like Prometheus's notifier: 5xx is the Alertmanager's trouble and
		// 429 asks us to slow down; both are worth another attempt.
		retrier: &notify.Retrier{
			RetryCodes:        []int{http.StatusTooManyRequests},
			CustomDetailsFunc: errorDetails,
		},
	}, nil
}

// Notify implements notify.Notifier. Resolved alerts keep their endsAt, so
// they resolve in the Alertmanager too. Firing alerts get an endsAt far
// enough ahead to keep them firing there until the group is sent again: twice
// repeat_interval plus group_interval after the flush, taking those from the
// dispatcher's context. Outside a flush they have none, and the
// Alertmanager's resolve_timeout applies.
func (n *Notifier) Notify(ctx context.Context, alerts ...*alert.Alert) notify.NotifyVerdict {
	body, err := json.Marshal(postable(ctx, alerts))
	if err != nil {
		return notify.Unrecoverable(fmt.Errorf("couldn't encode alerts: %w", err), notify.EncodingErrorReason)
	}
	if n.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, n.timeout, fmt.Errorf("alertmanager timeout reached (%s)", n.timeout))
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return notify.Unrecoverable(notify.RedactURL(err), notify.RequestErrorReason)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", version.ComponentUserAgent("alertd"))
	resp, err := n.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, context.Cause(ctx))
		}
		// The URL may hold credentials (userinfo, tokens in the query).
		return notify.Retry(0, notify.RedactURL(err), notify.DefaultReason)
	}
	defer notify.Drain(resp)
	retry, err := n.retrier.Check(resp.StatusCode, resp.Body)
	if err == nil {
		n.logger.Debug("Alerts forwarded", "num_alerts", len(alerts))
		return notify.Success()
	}
	reason := notify.GetFailureReasonFromStatusCode(resp.StatusCode)
	if retry {
		return notify.Retry(notify.ParseRetryAfter(resp.Header, time.Now()), err, reason)
	}
	return notify.Unrecoverable(err, reason)
}

// postable converts alerts to the body of POST /api/v2/alerts. The endsAt of
// a firing alert comes from endsAt.
func postable(ctx context.Context, alerts []*alert.Alert) models.PostableAlerts {
	return postableAt(endsAt(ctx), alerts)
}

// postableAt converts alerts to the body of POST /api/v2/alerts, firing
// alerts ending at firingEndsAt (zero: none).
func postableAt(firingEndsAt time.Time, alerts []*alert.Alert) models.PostableAlerts {
	out := make(models.PostableAlerts, 0, len(alerts))
	for _, a := range alerts {
		pa := &models.PostableAlert{
			Alert: models.Alert{
				Labels:       make(models.LabelSet, len(a.Labels)),
				GeneratorURL: strfmt.URI(a.GeneratorURL),
			},
			Annotations: make(models.LabelSet, len(a.Annotations)),
			StartsAt:    strfmt.DateTime(a.StartsAt),
		}
		for k, v := range a.Labels {
			pa.Labels[string(k)] = string(v)
		}
		for k, v := range a.Annotations {
			pa.Annotations[string(k)] = string(v)
		}
		switch {
		case a.Resolved():
			pa.EndsAt = strfmt.DateTime(a.EndsAt)
		case !firingEndsAt.IsZero():
			pa.EndsAt = strfmt.DateTime(firingEndsAt)
		}
		out = append(out, pa)
	}
	return out
}

// EndsAt returns the endsAt firing alerts forwarded in the notification
// ctx belongs to get; see Notify. alertd computes it when the notification
// is enqueued, so a delivery retried later keeps it.
func EndsAt(ctx context.Context) time.Time { return endsAt(ctx) }

// Send implements the outbox's delivery of a notification: it posts the
// alerts as Notify does, with nt.FiringEndsAt as the firing alerts'
// endsAt and the idempotency key in the Idempotency-Key header (an
// Alertmanager merges alerts posted twice anyway). Errors are classified
// for the outbox: 429 and 5xx are retried, other statuses are not.
func (n *Notifier) Send(ctx context.Context, nt *notice.Notice) error {
	body, err := json.Marshal(postableAt(nt.FiringEndsAt, nt.Alerts))
	if err != nil {
		return outbox.Permanent(fmt.Errorf("couldn't encode alerts: %w", err))
	}
	if n.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, n.timeout, fmt.Errorf("alertmanager timeout reached (%s)", n.timeout))
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return outbox.Permanent(notice.TransportError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", version.ComponentUserAgent("alertd"))
	req.Header.Set("Idempotency-Key", nt.Key)
	resp, err := n.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, context.Cause(ctx))
		}
		return notice.TransportError(err)
	}
	defer notify.Drain(resp)
	if err := notice.CheckResponse(resp, time.Now()); err != nil {
		return err
	}
	n.logger.Debug("Alerts forwarded", "num_alerts", len(nt.Alerts))
	return nil
}

// endsAt returns the endsAt of firing alerts in the notification ctx belongs
// to. An unchanged group is sent again at its first flush after
// repeat_interval, so its alerts must stay firing for repeat_interval plus
// one group_interval; endsAt doubles that to outlast a failed notification.
// The group_interval is read from ctx's deadline, since the dispatcher gives
// each flush until the next one. Without a repeat interval in ctx it returns
// the zero time.
func endsAt(ctx context.Context) time.Time {
	repeat, ok := notify.RepeatInterval(ctx)
	if !ok {
		return time.Time{}
	}
	now, ok := notify.Now(ctx)
	if !ok {
		now = time.Now()
	}
	var interval time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		interval = max(deadline.Sub(now), 0)
	}
	return now.Add(2 * (repeat + interval)).UTC()
}

// errorDetails reads the start of a failed response's body for the error.
func errorDetails(_ int, body io.Reader) string {
	if body == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	return strings.TrimSpace(string(b))
}
