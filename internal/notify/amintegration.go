package notify

import (
	"context"
	"fmt"
	"net/http"
	"reflect"

	amconfig "github.com/prometheus/alertmanager/config"
	amreceiver "github.com/prometheus/alertmanager/config/receiver"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	commoncfg "github.com/prometheus/common/config"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

// alertmanagerIntegrations are the integrations of Alertmanager's that
// alertd sends with Alertmanager's own notifiers (config/receiver), by the
// names Alertmanager gives them.
var alertmanagerIntegrations = []string{"email", "msteams", "msteamsv2", "discord", "telegram", "opsgenie", "victorops",
	"pushover", "webex", "mattermost", "rocketchat", "jira", "incidentio", "sns", "wechat"}

// alertmanagerIntegrations builds r's integrations of Alertmanager's other
// kinds (email, msteams, opsgenie …) with Alertmanager's notifiers, and
// calls add for each.
func (n *Notifier) alertmanagerIntegrations(r *alertconfig.Receiver, tmpl *template.Template, add func(kind string, sendResolved bool, send func(context.Context, *notice.Notice) error)) error {
	if r.AlertmanagerIntegrations.Empty() {
		return nil
	}
	rcv := r.AlertmanagerIntegrations.Receiver(r.Name)
	withoutRedirects(&rcv)
	ints, err := amreceiver.BuildReceiverIntegrations(rcv, tmpl, n.logger.With("receiver", r.Name))
	if err != nil {
		return err
	}
	for i := range ints {
		in := &ints[i]
		add(in.Name(), in.SendResolved(), func(ctx context.Context, nc *notice.Notice) error {
			return sendAlertmanager(ctx, in, r.Name, nc)
		})
	}
	return nil
}

// withoutRedirects turns off follow_redirects in copies of r's
// integrations' http_config. A 301, 302 or 303 turns the notification's
// POST into a GET without its body, which Alertmanager's notifiers would
// count as delivered if whatever answers the GET (a login page) says 200.
// alertd's own notifiers refuse such a delivery (notice.CheckResponse),
// but Alertmanager's build their http.Client themselves and take no
// CheckRedirect: not following redirects at all is the one way to make
// them fail it, with "unexpected status code 302" and for good, as other
// 3xx fail. The configuration itself is left as loaded (printed, compared
// at reloads).
func withoutRedirects(r *amconfig.Receiver) {
	httpConfig := reflect.TypeFor[*commoncfg.HTTPClientConfig]()
	rv := reflect.ValueOf(r).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		if f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Pointer || f.Type().Elem().Elem().Kind() != reflect.Struct {
			continue
		}
		confs := reflect.MakeSlice(f.Type(), f.Len(), f.Len())
		for j := range f.Len() {
			if f.Index(j).IsNil() {
				continue
			}
			c := reflect.New(f.Type().Elem().Elem())
			c.Elem().Set(f.Index(j).Elem())
			if h := c.Elem().FieldByName("HTTPConfig"); h.IsValid() && h.Type() == httpConfig && !h.IsNil() {
				hc := *h.Interface().(*commoncfg.HTTPClientConfig)
				hc.FollowRedirects = false
				h.Set(reflect.ValueOf(&hc))
			}
			confs.Index(j).Set(c)
		}
		f.Set(confs)
	}
}

// sendAlertmanager sends nc with one of Alertmanager's notifiers: the
// context carries what they read of the notification's group, and their
// verdict becomes an error the outbox retries, or not, as it says.
func sendAlertmanager(ctx context.Context, in *amnotify.Integration, receiverName string, nc *notice.Notice) error {
	ctx = amnotify.WithReceiverName(ctx, receiverName)
	ctx = amnotify.WithGroupKey(ctx, nc.ThreadKey())
	ctx = amnotify.WithGroupLabels(ctx, notice.LabelSet(nc.Data.GroupLabels))
	ctx = amnotify.WithRouteLabels(ctx, notice.LabelSet(nc.Data.RouteLabels))
	ctx = amnotify.WithNotificationReason(ctx, notifyReason(nc.Data.NotificationReason))
	v := in.Notify(ctx, nc.Alerts...)
	err := v.Err()
	if err == nil {
		return nil
	}
	// Counted by the outbox's reasons, as the other integrations' are.
	switch v.Reason() {
	case amnotify.ClientErrorReason, amnotify.AuthErrorReason:
		err = fmt.Errorf("%w: %w", &outbox.StatusError{Code: http.StatusBadRequest}, err)
	case amnotify.ServerErrorReason:
		err = fmt.Errorf("%w: %w", &outbox.StatusError{Code: http.StatusInternalServerError}, err)
	case amnotify.RateLimitedReason:
		err = fmt.Errorf("%w: %w", &outbox.StatusError{Code: http.StatusTooManyRequests}, err)
	case amnotify.ContextDeadlineExceededReason:
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	switch {
	case !v.ShouldRetry():
		return outbox.Permanent(err)
	case v.Delay() > 0:
		return outbox.RetryAfter(v.Delay(), err)
	}
	return err
}

// notifyReason parses Alertmanager's notification reason from its text.
func notifyReason(s string) amnotify.NotifyReason {
	for r := amnotify.ReasonDoNotNotify; r < amnotify.ReasonUnknown; r++ {
		if r.String() == s {
			return r
		}
	}
	return amnotify.ReasonUnknown
}
