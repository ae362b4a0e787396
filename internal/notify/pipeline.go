package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/labelset"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/alertmanager"
)

// pipeline is what one configuration builds: the routing tree and, per
// receiver, the stages that notify its integrations.
type pipeline struct {
	route *dispatch.Route
	stage amnotify.Stage
	tmpl  *template.Template
	// receivers are all configured receivers by name, routed to or not,
	// for SendToReceiver.
	receivers map[string]*alertconfig.Receiver
}

// build turns c's route and receivers into a pipeline. It starts nothing and
// touches no live state, so a failed reload leaves the running one intact.
func (n *Notifier) build(c *alertconfig.Config) (*pipeline, error) {
	if c == nil || c.Route == nil {
		return nil, errors.New("no route configured")
	}
	tmpl, err := template.FromGlobs(nil)
	if err != nil {
		return nil, fmt.Errorf("couldn't parse the default templates: %w", err)
	}
	tmpl.ExternalURL = n.externalURL

	route := dispatch.NewRoute(c.Route, nil)
	byName := make(map[string]*alertconfig.Receiver, len(c.Receivers))
	for _, r := range c.Receivers {
		if r == nil || r.Name == "" {
			return nil, errors.New("receiver without a name")
		}
		if byName[r.Name] != nil {
			return nil, fmt.Errorf("receiver %q is not unique", r.Name)
		}
		byName[r.Name] = r
	}
	used := map[string]bool{}
	var missing error
	route.Walk(func(r *dispatch.Route) {
		if byName[r.RouteOpts.Receiver] == nil && missing == nil {
			missing = fmt.Errorf("undefined receiver %q used in route", r.RouteOpts.Receiver)
		}
		used[r.RouteOpts.Receiver] = true
	})
	if missing != nil {
		return nil, missing
	}

	stages := make(amnotify.RoutingStage, len(used))
	for name := range used {
		s, err := n.receiverStage(byName[name], tmpl)
		if err != nil {
			return nil, fmt.Errorf("receiver %q: %w", name, err)
		}
		stages[name] = s
	}
	var stage amnotify.Stage = stages
	if n.mutes != nil {
		stage = amnotify.MultiStage{amnotify.NewMuteStage(muter(n.mutes), n.amMetrics), stages}
	}
	return &pipeline{route: route, stage: n.gate.wrap(stage), tmpl: tmpl, receivers: byName}, nil
}

// muter adapts Options.Mutes to Alertmanager's Muter.
type muter func(model.LabelSet) bool

// Mutes implements amnotify.Muter.
func (m muter) Mutes(_ context.Context, ls labelset.LabelSet) bool { return m(ls.LabelSet) }

// receiverStage builds r's integrations and returns the stage notifying
// them all at once, each through its own dedup, retry and log stages, as
// Alertmanager's PipelineBuilder does.
func (n *Notifier) receiverStage(r *alertconfig.Receiver, tmpl *template.Template) (amnotify.Stage, error) {
	var fanout amnotify.FanoutStage
	for i, wh := range r.WebhookConfigs {
		conf := *wh
		if conf.HTTPConfig == nil {
			hc := commoncfg.DefaultHTTPClientConfig
			conf.HTTPConfig = &hc
		}
		nf, err := webhook.New(&conf, tmpl, n.logger.With("receiver", r.Name, "integration", fmt.Sprintf("webhook[%d]", i)))
		if err != nil {
			return nil, fmt.Errorf("webhook_configs[%d]: %w", i, err)
		}
		fanout = append(fanout, n.integrationStage(r.Name, integrationWebhook, i, nf, &conf))
	}
	for i, am := range r.AlertmanagerConfigs {
		nf, err := alertmanager.New(am, n.logger.With("receiver", r.Name, "integration", fmt.Sprintf("alertmanager[%d]", i)))
		if err != nil {
			return nil, fmt.Errorf("alertmanager_configs[%d]: %w", i, err)
		}
		fanout = append(fanout, n.integrationStage(r.Name, integrationAlertmanager, i, nf, am))
	}
	return fanout, nil
}

// integrationStage is one integration's pipeline: skip what was already
// notified (nflog), send with retries, then log what was sent.
func (n *Notifier) integrationStage(receiver, kind string, idx int, nf amnotify.Notifier, rs amnotify.ResolvedSender) amnotify.Stage {
	integration := amnotify.NewIntegration(newInstrumented(nf, kind, n.metrics), rs, kind, idx, receiver)
	recv := &nflogpb.Receiver{GroupName: receiver, Integration: kind, Idx: uint32(idx)}
	return amnotify.MultiStage{
		amnotify.NewDedupStage(&integration, n.nflog, recv),
		&deliverStage{
			retry:         amnotify.NewRetryStage(integration, receiver, n.amMetrics, n.recorder),
			receiver:      receiver,
			integration:   integration.String(),
			kind:          kind,
			notifications: n.metrics.notifications.WithLabelValues(kind),
			failed:        n.metrics.failed,
			onNotify:      n.onNotify,
		},
		amnotify.NewSetNotifiesStage(n.nflog, recv, n.flags),
	}
}

// defaultExternalURL stands in for a nil Options.ExternalURL.
var defaultExternalURL = &url.URL{}
