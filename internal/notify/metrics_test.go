package notify

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestMetrics checks the alertd_ metrics exist from the start, with a
// child at 0 for each integration type and failure reason.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := New(Options{Config: load(t, "", ""), Registerer: reg})
	require.NoError(t, err)
	defer n.Stop()

	golden := filepath.Join("testdata", "metrics.prom")
	if *update {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		var b bytes.Buffer
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "alertd_") {
				_, err := expfmt.MetricFamilyToText(&b, mf)
				require.NoError(t, err)
			}
		}
		require.NoError(t, os.WriteFile(golden, b.Bytes(), 0o644))
	}
	f, err := os.Open(golden)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, testutil.GatherAndCompare(reg, f,
		"alertd_notifications_total",
		"alertd_notifications_failed_total",
		"alertd_notification_requests_total",
		"alertd_notification_requests_failed_total",
		"alertd_notification_latency_seconds",
	))

	// Alertmanager's own metrics keep their names.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, name := range []string{"alertmanager_dispatcher_aggregation_groups", "alertmanager_nflog_queries_total", "alertmanager_alerts_per_alert_limit"} {
		require.True(t, slices.Contains(names, name), "%s is not registered", name)
	}

	// Registering twice is an error, not a panic, and registers nothing.
	_, err = New(Options{Config: load(t, "", ""), Registerer: reg})
	require.ErrorContains(t, err, "couldn't register metrics: duplicate metrics collector registration attempted")
	after, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, after, len(mfs))
}

// verdictNotifier is one of Alertmanager's notifiers that fails with a
// reason.
type verdictNotifier struct{ reason amnotify.Reason }

func (v verdictNotifier) Notify(context.Context, ...*alert.Alert) amnotify.NotifyVerdict {
	return amnotify.Retry(0, errors.New("failed"), v.reason)
}

// TestFailureReasonsPrecreated checks that alertd_notifications_failed_total
// pre-creates exactly the reasons a failed notification can be counted
// under: every reason failureReason gives, for any error an integration's
// send returns (alertd's own HTTP integrations' statuses, timeouts and
// connection errors; Alertmanager's notifiers' verdicts of every reason),
// is pre-created, and no pre-created reason is one that cannot occur
// (Alertmanager's authError, templateError … or, for email, an HTTP
// status's).
func TestFailureReasonsPrecreated(t *testing.T) {
	httpErrs := []error{
		&outbox.StatusError{Code: http.StatusBadRequest}, &outbox.StatusError{Code: http.StatusUnauthorized},
		&outbox.StatusError{Code: http.StatusTooManyRequests}, &outbox.StatusError{Code: http.StatusInternalServerError},
		outbox.RetryAfter(time.Second, errors.New("slow down")), outbox.Permanent(&outbox.StatusError{Code: http.StatusNotFound}),
		context.DeadlineExceeded, context.Canceled, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, errors.New("bad template"),
	}
	// What alertd's own integrations can fail with: what an HTTP send
	// returns.
	possible := map[string]map[string]bool{}
	add := func(integration string, err error) {
		if possible[integration] == nil {
			possible[integration] = map[string]bool{}
		}
		possible[integration][failureReason(err)] = true
	}
	for _, i := range []string{integrationWebhook, integrationAlertmanager, integrationSlack, integrationPagerDuty} {
		for _, err := range httpErrs {
			add(i, err)
		}
	}
	// Alertmanager's notifiers: a verdict of any reason, or a timeout or
	// connection error under the default reason. Email's notifier gives
	// every error the default reason.
	nc := &notice.Notice{Data: &template.Data{}}
	for _, i := range alertmanagerIntegrations {
		reasons := []amnotify.Reason{amnotify.DefaultReason}
		if i != "email" {
			for r := amnotify.DefaultReason; r <= amnotify.MissingContextReason; r++ {
				reasons = append(reasons, r)
			}
		}
		for _, r := range reasons {
			in := amnotify.NewIntegration(verdictNotifier{r}, sendResolved(true), i, 0, "r")
			add(i, sendAlertmanager(context.Background(), &in, "r", nc))
		}
		add(i, context.DeadlineExceeded)
		add(i, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})
	}

	reg := prometheus.NewRegistry()
	n, err := New(Options{Config: load(t, "", ""), Registerer: reg})
	require.NoError(t, err)
	defer n.Stop()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	created := map[string]map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "alertd_notifications_failed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			if created[ls["integration"]] == nil {
				created[ls["integration"]] = map[string]bool{}
			}
			created[ls["integration"]][ls["reason"]] = true
		}
	}
	require.Equal(t, possible, created)
	require.Equal(t, map[string]bool{"other": true, "contextDeadlineExceeded": true}, created["email"])
	require.Len(t, created["webhook"], 5)
}

// sendResolved is Alertmanager's ResolvedSender.
type sendResolved bool

func (s sendResolved) SendResolved() bool { return bool(s) }
