package rules

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
)

// Defaults of Prometheus's --rules.alert.* flags.
const (
	DefaultOutageTolerance = time.Hour
	DefaultForGracePeriod  = 10 * time.Minute
	DefaultResendDelay     = time.Minute
)

// Alert is an alert of a rule, as Prometheus's rule manager keeps it.
type Alert = promrules.Alert

// NotifyFunc receives the alerts of one alerting rule after each evaluation
// that needs them sent (Prometheus's resend logic decides which). expr is the
// rule's expression; rule its name and group.
type NotifyFunc func(ctx context.Context, expr string, alerts ...*Alert)

// Options configure a Manager.
type Options struct {
	// Storage receives recording rule results and the ALERTS and
	// ALERTS_FOR_STATE series, and is where `for` state is restored from.
	Storage storage.Storage
	// QueryFunc answers the rules' queries. Nil means Engine over Storage.
	QueryFunc promrules.QueryFunc
	// Engine evaluates PromQL when QueryFunc is nil.
	Engine *promql.Engine
	// Notify receives alerts to send.
	Notify NotifyFunc
	// ExternalURL is used in generator URLs and the $externalURL template variable.
	ExternalURL *url.URL
	// OutageTolerance, ForGracePeriod and ResendDelay are Prometheus's
	// --rules.alert.for-outage-tolerance, --rules.alert.for-grace-period and
	// --rules.alert.resend-delay. Zero means Prometheus's default.
	OutageTolerance time.Duration
	ForGracePeriod  time.Duration
	ResendDelay     time.Duration
	// QueryOffset is the default query_offset of groups that set none.
	QueryOffset func() time.Duration
	// TemplateQuery, if set, is called after each query of an alerting
	// rule's label and annotation templates (Prometheus's `query` template
	// function; TemplateQuery tells them apart) with its error, nil if it
	// succeeded. It must be safe for concurrent use.
	TemplateQuery func(err error)
	// Context is the context rules evaluate in; nil means context.Background().
	Context    context.Context
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Manager evaluates rule groups.
type Manager struct {
	*promrules.Manager
	opts Options
}

// NewManager returns a Manager; Run starts it.
func NewManager(o Options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OutageTolerance == 0 {
		o.OutageTolerance = DefaultOutageTolerance
	}
	if o.ForGracePeriod == 0 {
		o.ForGracePeriod = DefaultForGracePeriod
	}
	if o.ResendDelay == 0 {
		o.ResendDelay = DefaultResendDelay
	}
	if o.QueryFunc == nil {
		o.QueryFunc = promrules.EngineQueryFunc(o.Engine, o.Storage)
	}
	h := &Hysteresis{Query: o.QueryFunc, Storage: o.Storage, OutageTolerance: o.OutageTolerance, Logger: o.Logger}
	if o.QueryOffset == nil {
		o.QueryOffset = func() time.Duration { return 0 }
	}
	if o.ExternalURL == nil {
		o.ExternalURL = &url.URL{}
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	notify := o.Notify
	if notify == nil {
		notify = func(context.Context, string, ...*Alert) {}
	}
	// Asked once per query, and passed down: Hysteresis and Remote (its
	// logs) tell a template's query from the rule's by it.
	query := func(ctx context.Context, q string, t time.Time) (promql.Vector, error) {
		template := TemplateQuery(ctx, q)
		v, err := h.QueryFunc(withTemplateQuery(ctx, template), q, t)
		if template && o.TemplateQuery != nil {
			o.TemplateQuery(err)
		}
		return v, err
	}
	m := promrules.NewManager(&promrules.ManagerOptions{
		NameValidationScheme:   model.UTF8Validation,
		ExternalURL:            o.ExternalURL,
		QueryFunc:              query,
		NotifyFunc:             promrules.NotifyFunc(notify),
		Context:                o.Context,
		AppendableV2:           o.Storage,
		Queryable:              o.Storage,
		Logger:                 o.Logger,
		Registerer:             o.Registerer,
		OutageTolerance:        o.OutageTolerance,
		ForGracePeriod:         o.ForGracePeriod,
		ResendDelay:            o.ResendDelay,
		DefaultRuleQueryOffset: o.QueryOffset,
	})
	return &Manager{Manager: m, opts: o}
}

// Update loads the rule files matching the globs and replaces the running
// groups, keeping the state of rules that did not change. On error the
// running groups stay.
func (m *Manager) Update(interval time.Duration, globs []string, externalLabels labels.Labels) error {
	files, err := Files(globs)
	if err != nil {
		return err
	}
	return m.Manager.Update(interval, files, externalLabels, m.opts.ExternalURL.String(), EvalIterationFunc)
}

// Files expands rule file globs, sorted and without duplicates.
func Files(globs []string) ([]string, error) {
	var files []string
	for _, g := range globs {
		fs, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("invalid rule file pattern %q: %w", g, err)
		}
		files = append(files, fs...)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// Check parses the rule files as Prometheus does when it loads them and as
// `promtool check rules` does: YAML, PromQL, templates, label names, and
// duplicate rules within a group; and that the KeepFiringWhile annotations
// are PromQL. It returns the number of rules and every
// error found, each naming its file and, where known, line.
func Check(files []string) (int, []error) {
	n := 0
	var errs []error
	p := parser.NewParser(parser.Options{})
	for _, f := range files {
		rgs, ferrs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
		// rulefmt's errors name the file, and the group, rule and line
		// where they have one. It reports a YAML syntax error twice (from
		// two decoding passes); keep one.
		for i, e := range ferrs {
			if i == 0 || e.Error() != ferrs[i-1].Error() {
				errs = append(errs, e)
			}
		}
		if rgs == nil {
			continue
		}
		for _, g := range rgs.Groups {
			n += len(g.Rules)
			seen := map[string]bool{}
			for _, r := range g.Rules {
				if keep, ok := r.Annotations[KeepFiringWhile]; ok {
					if _, err := p.ParseExpr(keep); err != nil {
						errs = append(errs, fmt.Errorf("%s: group %q, rule %q: annotation %s: %w", f, g.Name, r.Alert, KeepFiringWhile, err))
					}
				}
				key := r.Record + r.Alert + "\xff" + promrules.FromMaps(g.Labels, r.Labels).String()
				if seen[key] {
					errs = append(errs, fmt.Errorf("%s: group %q: duplicate rule %q with labels %s", f, g.Name, r.Record+r.Alert, promrules.FromMaps(g.Labels, r.Labels)))
				}
				seen[key] = true
			}
		}
	}
	return n, errs
}
