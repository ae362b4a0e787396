// Package alertd is the alert engine process: it wires storage (the embedded
// Prometheus TSDB, scrape manager and PromQL engine, or a remote
// Prometheus-compatible API), rule evaluation, alert intake, the pipeline of
// stages every alert goes through, and notification.
package alertd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/alertmanager/dispatch"
	amnotify "github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/prometheus/discovery"
	_ "github.com/prometheus/prometheus/discovery/file"       // file_sd_configs
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // kubernetes_sd_configs
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/notify"
	"github.com/modelmon/modelmon/internal/notify/slack"
	"github.com/modelmon/modelmon/internal/outbox"
	"github.com/modelmon/modelmon/internal/web"
	"github.com/modelmon/modelmon/rules"
)

// Options configure alertd. Zero fields take the value of DefaultOptions.
type Options struct {
	// ConfigFile is the YAML configuration; empty runs on the defaults (no
	// rules, no targets).
	ConfigFile string
	Web        *toolkit.FlagConfig
	// ExternalURL is where users reach alertd; it prefixes generator URLs.
	ExternalURL *url.URL
	// RoutePrefix is the path every endpoint is served under ("" or "/": the root).
	RoutePrefix string
	MetricsPath string
	// StoragePath holds the TSDB and alertd's own state.
	StoragePath string
	// Retention is how long the TSDB keeps samples.
	Retention time.Duration
	// DatasourceURL, when set, overrides the configuration's datasource.url:
	// rules query that Prometheus-compatible API instead of the embedded engine.
	DatasourceURL string
	// QueryTimeout and QueryMaxSamples bound the embedded engine's queries.
	QueryTimeout    time.Duration
	QueryMaxSamples int
	// OutageTolerance, ForGracePeriod and ResendDelay are Prometheus's
	// --rules.alert.* settings.
	OutageTolerance time.Duration
	ForGracePeriod  time.Duration
	ResendDelay     time.Duration
	// ResolvedRetention is how long resolved alerts stay in GET
	// /api/v1/alerts.
	ResolvedRetention time.Duration
	// SilenceRetention is how long an expired silence stays listed and in
	// <StoragePath>/silences.json after it ends, as Alertmanager's
	// --data.retention: users and alertd replay --silences look back
	// days, not the hour resolved alerts stay.
	SilenceRetention time.Duration
	// MaintenanceRetention and SuppressionRetention are how long an
	// expired maintenance window and suppression rule of the API stay
	// listed and in their files under StoragePath after they end, as
	// silences do for SilenceRetention.
	MaintenanceRetention time.Duration
	SuppressionRetention time.Duration
	// MaxAlertsBody bounds request bodies of the intake endpoints.
	MaxAlertsBody int64
	// LedgerRetention is how long the alert ledger keeps events.
	LedgerRetention time.Duration
	// Outbox configures notification delivery: InitialBackoff,
	// MaxBackoff, MaxAge (then dead letter) and Retention (of delivered
	// idempotency keys); zero fields take the outbox's defaults (1s, 5m,
	// 24h, 7d). The outbox lives in <StoragePath>/outbox.db.
	Outbox outbox.Options

	Logger *slog.Logger
	Now    func() time.Time
}

// DefaultOptions returns alertd's defaults.
func DefaultOptions() Options {
	return Options{
		MetricsPath:          "/metrics",
		StoragePath:          "data/",
		Retention:            15 * 24 * time.Hour,
		QueryTimeout:         2 * time.Minute,
		QueryMaxSamples:      50_000_000,
		OutageTolerance:      rules.DefaultOutageTolerance,
		ForGracePeriod:       rules.DefaultForGracePeriod,
		ResendDelay:          rules.DefaultResendDelay,
		ResolvedRetention:    time.Hour,
		SilenceRetention:     defaultSilenceRetention,
		MaintenanceRetention: defaultMaintenanceRetention,
		SuppressionRetention: defaultSuppressionRetention,
		MaxAlertsBody:        16 << 20,
		LedgerRetention:      defaultLedgerRetention,
	}
}

func (o *Options) setDefaults() {
	d := DefaultOptions()
	if o.MetricsPath == "" {
		o.MetricsPath = d.MetricsPath
	}
	if o.StoragePath == "" {
		o.StoragePath = d.StoragePath
	}
	if o.Retention <= 0 {
		o.Retention = d.Retention
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = d.QueryTimeout
	}
	if o.QueryMaxSamples <= 0 {
		o.QueryMaxSamples = d.QueryMaxSamples
	}
	if o.OutageTolerance <= 0 {
		o.OutageTolerance = d.OutageTolerance
	}
	if o.ForGracePeriod <= 0 {
		o.ForGracePeriod = d.ForGracePeriod
	}
	if o.ResendDelay <= 0 {
		o.ResendDelay = d.ResendDelay
	}
	if o.ResolvedRetention <= 0 {
		o.ResolvedRetention = d.ResolvedRetention
	}
	if o.SilenceRetention <= 0 {
		o.SilenceRetention = d.SilenceRetention
	}
	if o.MaintenanceRetention <= 0 {
		o.MaintenanceRetention = d.MaintenanceRetention
	}
	if o.SuppressionRetention <= 0 {
		o.SuppressionRetention = d.SuppressionRetention
	}
	if o.MaxAlertsBody <= 0 {
		o.MaxAlertsBody = d.MaxAlertsBody
	}
	if o.LedgerRetention <= 0 {
		o.LedgerRetention = d.LedgerRetention
	}
	if o.Web == nil {
		o.Web = web.DefaultFlags(":9109")
	}
	if o.ExternalURL == nil {
		o.ExternalURL = &url.URL{Scheme: "http", Host: "localhost:9109"}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Alertd is a running alert engine.
type Alertd struct {
	opts   Options
	logger *slog.Logger
	reg    *prometheus.Registry
	db     *tsdb.DB
	engine *promql.Engine
	remote *rules.Remote
	rules  *rules.Manager
	notify *notify.Notifier
	// pipeline is the alert store and its stages.
	*pipeline
	// pushedAlerts keeps the alerts posted to alertd across restarts
	// (pushed.go).
	pushedAlerts *pushedFile
	// upstream asks the Alertmanagers that relay alerts to the webhook
	// about them (upstream.go).
	upstream *upstream
	metrics  *metrics
	// ledger is the durable history of alerts, incidents and verdicts.
	ledger    *ledger
	precision *precisionCollector
	startedAt time.Time
	prunedAt  time.Time
	// downSince holds, by downEval.key, when each rule or detector that
	// fails because the data source is down was first seen failing; only
	// the loop's checkDatasource touches it.
	downSince map[string]time.Time

	// actions are the retrain/deploy webhooks into CI, delivered through
	// the outbox (actions.go).
	actions *actionRunner
	// escalation escalates incidents by policy (escalation_engine.go).
	escalation *escalator
	// escalateIncident escalates the incidents of alerts whose action
	// failed verification (escalateIncidents; tests replace it).
	escalateIncident func(ctx context.Context, alerts []*Alert, reason string) error

	discovery *discovery.Manager
	scrape    *scrape.Manager
	// staleness marks the series of a scrape job removed on reload stale
	// (staleness.go).
	staleness *scrapeStaleness

	query          instantQueryFunc
	queryRange     queryRangeFunc
	anomalyMetrics *anomalyMetrics
	anomalyMu      sync.Mutex
	anomalyRunners []*anomalyRunner
	anomalyCancel  context.CancelFunc
	anomalyWG      sync.WaitGroup

	// slackVerifier authenticates Slack's interaction requests;
	// resolveFn is the resolve button's hook (nil: record it).
	slackVerifier *slack.Verifier
	resolveFn     atomic.Pointer[ResolveFunc]

	cfg      atomic.Pointer[alertconfig.Config]
	routing  atomic.Pointer[routing]
	reloader *config.Reloader[alertconfig.Config]
	ready    atomic.Bool
	started  atomic.Bool

	ctx      context.Context
	cancel   context.CancelFunc
	web      *http.Server
	webLns   []net.Listener
	reloadCh chan chan error
	stopOnce sync.Once
	stopErr  error
	wg       sync.WaitGroup
}

// New builds alertd: it opens storage, loads the configuration and rule
// files, and starts nothing. Start serves.
func New(o Options) (*Alertd, error) {
	o.setDefaults()
	a := &Alertd{
		opts:     o,
		logger:   o.Logger,
		reg:      prometheus.NewRegistry(),
		reloadCh: make(chan chan error),

		slackVerifier: slack.NewVerifier(),
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.reg.MustRegister(
		versioncollector.NewCollector("alertd"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	ok := false
	defer func() {
		if !ok {
			a.cancel()
			if a.db != nil {
				a.db.Close()
			}
			_ = a.ledger.close()
		}
	}()

	// The flag is checked as datasource.url in the file is: a URL without
	// a scheme (prometheus:9090) would otherwise start, never answer and
	// page AlertdDatasourceDown.
	if u := o.DatasourceURL; u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("invalid --datasource.url=%q: want http(s)://host[:port][/path]", u)
		}
	}
	// Load the configuration once up front: its datasource decides how the
	// engine is wired, and a bad file must stop start-up.
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(o.StoragePath, 0o755); err != nil {
		return nil, fmt.Errorf("couldn't create --storage.path: %w", err)
	}
	tsdbOpts := tsdb.DefaultOptions()
	tsdbOpts.RetentionDuration = o.Retention.Milliseconds()
	a.db, err = tsdb.Open(filepath.Join(o.StoragePath, "tsdb"), a.logger.With("component", "tsdb"), a.reg, tsdbOpts, nil)
	if err != nil {
		return nil, fmt.Errorf("couldn't open the TSDB under --storage.path=%q: %w", o.StoragePath, err)
	}
	a.engine = promql.NewEngine(promql.EngineOpts{
		Logger:               a.logger.With("component", "query engine"),
		Reg:                  a.reg,
		MaxSamples:           o.QueryMaxSamples,
		Timeout:              o.QueryTimeout,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
	a.metrics = newMetrics(a.reg)

	a.ledger, err = openLedger(ledgerOptions{Dir: ledgerPath(o.StoragePath), Retention: o.LedgerRetention,
		Logger: a.logger.With("component", "ledger"), Registerer: a.reg, Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("couldn't open the alert ledger under --storage.path=%q: %w", o.StoragePath, err)
	}
	a.precision = &precisionCollector{}
	a.reg.MustRegister(a.precision)
	if a.actions, err = newActionRunner(o.StoragePath, a.reg, a.logger.With("component", "actions"), o.Now); err != nil {
		return nil, err
	}
	// One outbox delivers notifications and actions.
	senders := map[string]outbox.Sender{integrationAction: a.actions}
	maps.Copy(senders, o.Outbox.Senders)
	a.notify, err = notify.New(notify.Options{
		Config:      cfg,
		ExternalURL: o.ExternalURL,
		StoragePath: o.StoragePath,
		Logger:      a.logger.With("component", "notify"),
		Registerer:  a.reg,
		OnNotify:    a.onNotify,
		OnMute:      a.onMute,
		Outbox: outbox.Options{
			InitialBackoff: o.Outbox.InitialBackoff, MaxBackoff: o.Outbox.MaxBackoff,
			MaxAge: o.Outbox.MaxAge, Retention: o.Outbox.Retention, SendTimeout: o.Outbox.SendTimeout,
			Senders: senders,
			OnDone:  a.actions.done,
		},
		// A stage's suppression (silence, maintenance, deploy, hold, …)
		// also mutes an alert the notifier already holds from an earlier
		// send.
		Mutes: func(ls model.LabelSet) bool {
			return a.silencer.mutes(o.Now(), ls) || a.store.isSuppressed(ls.Fingerprint())
		},
	})
	if err != nil {
		return nil, err
	}
	if err := a.classifierRulesValid(cfg); err != nil {
		return nil, err
	}
	a.pipeline, err = newPipeline(o.StoragePath, a.reg, a.logger, a.notify.Put, a.matchRoutes, o.ResolvedRetention, o.Now)
	if err != nil {
		return nil, err
	}
	a.store.ledger, a.store.groups = a.ledger, a.matchGroups
	a.pushedAlerts = newPushedFile(pushedAlertsPath(o.StoragePath), a.store)
	a.upstream = newUpstream(a.ctx, a.reg, a.store, a.logger.With("component", "upstream"), o.Now, a.cfg.Load)
	a.actions.enqueue, a.actions.held, a.store.onFire = a.notify.Outbox().Add, a.notify.Outbox().Held, a.onAlertFires
	a.actions.note, a.actions.noteInOrder = a.store.note, a.store.noteInOrder
	// Actions the outbox refused are retried on the loop's passes, backing
	// off up to the outbox's max backoff, alert triggers and rollbacks for
	// its max age.
	maxBackoff, maxAge := o.Outbox.MaxBackoff, o.Outbox.MaxAge
	if maxBackoff <= 0 {
		maxBackoff = outbox.DefaultMaxBackoff
	}
	if maxAge <= 0 {
		maxAge = outbox.DefaultMaxAge
	}
	a.actions.retryMaxWait, a.actions.retryMaxAge = max(1, int(maxBackoff/a.loopInterval())), maxAge
	a.store.saves = append(a.store.saves, a.actions.commit)
	a.reg.MustRegister(&lifecycleCollector{deployments: a.deployments, ledger: a.ledger, now: o.Now})
	if a.escalation, err = newEscalator(o.StoragePath, a.reg, a.logger.With("component", "escalation"), o.Now); err != nil {
		return nil, err
	}
	a.escalation.send = a.notify.SendToReceiver
	a.escalateIncident = a.escalateIncidents
	a.SetResolve(a.resolveIncident)

	var queryFunc func(ctx context.Context, q string, t time.Time) (promql.Vector, error)
	if u := a.datasourceURL(cfg); u != "" {
		client, err := commoncfg.NewClientFromConfig(cfg.Datasource.HTTPClientConfig, "alertd_datasource")
		if err != nil {
			return nil, fmt.Errorf("couldn't configure the data source: %w", err)
		}
		a.remote, err = rules.NewRemote(u, rules.RemoteOptions{Client: client, Timeout: time.Duration(cfg.Datasource.Timeout),
			Logger: a.logger.With("component", "datasource")})
		if err != nil {
			return nil, err
		}
		queryFunc = a.remote.Query
		a.query, a.queryRange = a.remote.Query, a.remote.QueryRange
		a.metrics.datasourceUp(a.reg, a.remote, a.datasourceUp, func() int { return len(a.downEvals()) })
	} else {
		sdMetrics, err := discovery.CreateAndRegisterSDMetrics(a.reg)
		if err != nil {
			return nil, fmt.Errorf("couldn't register service discovery metrics: %w", err)
		}
		a.discovery = discovery.NewManager(a.ctx, a.logger.With("component", "discovery manager scrape"), a.reg, sdMetrics, discovery.Name("scrape"))
		if a.discovery == nil {
			return nil, errors.New("couldn't create the discovery manager")
		}
		// The scrape manager passes each target in its appenders'
		// context, so that staleness knows the series each target wrote.
		a.staleness = newScrapeStaleness(a.db)
		a.scrape, err = scrape.NewManager(&scrape.Options{PassMetadataInContext: true}, a.logger.With("component", "scrape manager"), nil, nil, a.staleness, a.reg)
		if err != nil {
			return nil, fmt.Errorf("couldn't create the scrape manager: %w", err)
		}
	}
	if a.query == nil {
		a.query = promrules.EngineQueryFunc(a.engine, a.db)
		a.queryRange = a.engineQueryRange
	}
	a.anomalyMetrics = newAnomalyMetrics(a.reg)
	a.reg.MustRegister(anomalyCollector{runners: a.runners})
	a.rules = rules.NewManager(rules.Options{
		Storage:         a.db,
		QueryFunc:       queryFunc,
		Engine:          a.engine,
		Notify:          a.notifyRules,
		ExternalURL:     o.ExternalURL,
		OutageTolerance: o.OutageTolerance,
		ForGracePeriod:  o.ForGracePeriod,
		ResendDelay:     o.ResendDelay,
		TemplateQuery:   a.metrics.templateQuery,
		QueryOffset: func() time.Duration {
			if c := a.cfg.Load(); c != nil {
				return time.Duration(c.Global.RuleQueryOffset)
			}
			return 0
		},
		Context:    a.ctx,
		Logger:     a.logger.With("component", "rule manager"),
		Registerer: a.reg,
	})

	a.reloader = config.NewReloader(a.reg, "alertd", a.loadConfig, a.applyConfig,
		func() float64 { return float64(o.Now().UnixNano()) / 1e9 }, a.logger.With("component", "config"))
	if err := a.reloader.Reload(); err != nil {
		return nil, err
	}
	var h http.Handler = a.routes()
	if p := strings.TrimRight(o.RoutePrefix, "/"); p != "" {
		outer := http.NewServeMux()
		outer.Handle(p+"/", http.StripPrefix(p, h))
		outer.Handle("/", http.RedirectHandler(p+"/", http.StatusFound))
		h = outer
	}
	a.web = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ok = true
	return a, nil
}

func (a *Alertd) datasourceURL(cfg *alertconfig.Config) string {
	if a.opts.DatasourceURL != "" {
		return a.opts.DatasourceURL
	}
	return cfg.Datasource.URL
}

// loadConfig reads the configuration file and checks its rule files, so that
// a reload with a broken rule file keeps everything running as it was.
func (a *Alertd) loadConfig() (*alertconfig.Config, error) {
	var (
		cfg *alertconfig.Config
		err error
	)
	if a.opts.ConfigFile != "" {
		cfg, err = alertconfig.LoadFile(a.opts.ConfigFile)
	} else {
		cfg, err = alertconfig.Load("", "")
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't load configuration (--config.file=%q): %w", a.opts.ConfigFile, err)
	}
	files, err := rules.Files(cfg.RuleFiles)
	if err != nil {
		return nil, fmt.Errorf("couldn't load configuration (--config.file=%q): %w", a.opts.ConfigFile, err)
	}
	if _, errs := rules.Check(files); len(errs) > 0 {
		return nil, fmt.Errorf("couldn't load rule files: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// applyConfig swaps in a configuration loadConfig checked. Scrape and
// notification configuration can still fail here (a TLS file gone in
// between); the rules then keep running on the previous files.
func (a *Alertd) applyConfig(cfg *alertconfig.Config) error {
	// The scrape manager exists in embedded mode only, and the rule
	// manager's query function is chosen once: the mode stays, while a
	// remote data source's URL, timeout and HTTP settings follow the file.
	remote := a.datasourceURL(cfg)
	if (remote != "") != (a.remote != nil) {
		return errors.New("switching between the embedded engine and a remote data source needs a restart")
	}
	upstreamClient, err := newUpstreamClient(cfg.Intake.AlertmanagerAPI)
	if err != nil {
		return err
	}
	var dsClient *http.Client
	if a.remote != nil {
		if dsClient, err = commoncfg.NewClientFromConfig(cfg.Datasource.HTTPClientConfig, "alertd_datasource"); err != nil {
			return fmt.Errorf("couldn't configure the data source: %w", err)
		}
	}
	if a.scrape != nil {
		active := a.scrape.TargetsActive()
		err := a.scrape.ApplyConfig(cfg.Prometheus)
		// A job that is gone is gone even when applying the rest failed.
		a.markRemovedJobsStale(active)
		if err != nil {
			return fmt.Errorf("couldn't apply scrape configuration: %w", err)
		}
		sd := map[string]discovery.Configs{}
		for _, sc := range cfg.ScrapeConfigs {
			sd[sc.JobName] = sc.ServiceDiscoveryConfigs
		}
		if err := a.discovery.ApplyConfig(sd); err != nil {
			return fmt.Errorf("couldn't apply service discovery configuration: %w", err)
		}
	}
	if prev := a.cfg.Load(); prev != nil {
		if err := a.notify.ApplyConfig(cfg); err != nil {
			return err
		}
	}
	if err := a.rules.Update(time.Duration(cfg.Global.EvaluationInterval), cfg.RuleFiles, cfg.Global.ExternalLabels); err != nil {
		return fmt.Errorf("couldn't load rules: %w", err)
	}
	if err := a.pipeline.apply(cfg); err != nil {
		return err
	}
	if err := a.escalation.setPolicies(cfg.EscalationPolicies()); err != nil {
		return err
	}
	a.routing.Store(newRouting(dispatch.NewRoute(cfg.Route, nil), timeinterval.NewIntervener(cfg.Intervals())))
	a.applyAnomaly(cfg.AnomalyDetectors)
	a.actions.set(cfg.Actions)
	// An action's outbox metrics exist at 0 from the start, as a
	// receiver's do, so that rate() sees its first delivery and an alert
	// on its dead letters its first one; a removed action's go once its
	// pending requests are delivered or dead-lettered.
	configured := map[string]bool{}
	for _, c := range cfg.Actions {
		a.notify.Outbox().InitializeFor(c.Name, integrationAction, 1)
		configured[c.Name] = true
	}
	a.notify.Outbox().Retain(func(receiver, integration string, _ int) bool {
		return integration != integrationAction || configured[receiver]
	})
	a.upstream.client.Store(upstreamClient)
	if a.remote != nil {
		if err := a.remote.Update(remote, dsClient, time.Duration(cfg.Datasource.Timeout)); err != nil {
			return err
		}
	}
	a.cfg.Store(cfg)
	return nil
}

// markRemovedJobsStale writes staleness markers for the series of the
// targets of the jobs in active (the scrape manager's before a reload) that
// the scrape manager no longer runs. ApplyConfig has stopped their scrapes,
// so nothing of theirs is written after the markers.
func (a *Alertd) markRemovedJobsStale(active map[string][]*scrape.Target) {
	pools := a.scrape.ScrapePools()
	var jobs []string
	var targets []*scrape.Target
	for job, ts := range active {
		if !slices.Contains(pools, job) {
			jobs = append(jobs, job)
			targets = append(targets, ts...)
		}
	}
	if len(jobs) == 0 {
		return
	}
	slices.Sort(jobs)
	// Scraped samples carry the wall clock's time, so do the markers.
	n, err := a.staleness.markStale(a.ctx, targets, time.Now().UnixMilli())
	if err != nil {
		a.logger.Error("Failed to mark the series of removed scrape jobs stale", "jobs", strings.Join(jobs, ","), "err", err)
		return
	}
	a.logger.Info("Marked the series of removed scrape jobs stale", "jobs", strings.Join(jobs, ","), "series", n)
}

// applyAnomaly replaces the anomaly detectors with the configured ones.
// Detectors whose configuration did not change keep their state; the others
// start over, replaying their history. Before Start, they only wait. The
// metrics of a removed detector are deleted.
func (a *Alertd) applyAnomaly(cfgs []*alertconfig.AnomalyDetector) {
	a.anomalyMu.Lock()
	defer a.anomalyMu.Unlock()
	old := map[string]*anomalyRunner{}
	for _, r := range a.anomalyRunners {
		old[r.cfg.Name] = r
	}
	next := make([]*anomalyRunner, 0, len(cfgs))
	for _, c := range cfgs {
		if r, ok := old[c.Name]; ok && reflect.DeepEqual(r.cfg, c) {
			next = append(next, r)
			continue
		}
		next = append(next, newAnomalyRunner(c, a.query, a.queryRange, a.db, a.anomalyMetrics, a.logger.With("component", "anomaly")))
	}
	started := a.started.Load()
	if started {
		a.stopAnomalyLocked()
	}
	// The removed detectors' runners are stopped: their series go.
	for name := range old {
		if !slices.ContainsFunc(cfgs, func(c *alertconfig.AnomalyDetector) bool { return c.Name == name }) {
			a.anomalyMetrics.deleteDetector(name)
		}
	}
	a.anomalyRunners = next
	if started {
		a.startAnomalyLocked()
	}
}

// startAnomalyLocked starts the detectors; a.anomalyMu is held.
func (a *Alertd) startAnomalyLocked() {
	ctx, cancel := context.WithCancel(a.ctx)
	a.anomalyCancel = cancel
	for _, r := range a.anomalyRunners {
		a.anomalyWG.Add(1)
		go func() {
			defer a.anomalyWG.Done()
			r.run(ctx, a.opts.Now)
		}()
	}
}

// stopAnomalyLocked stops the detectors and waits; a.anomalyMu is held.
func (a *Alertd) stopAnomalyLocked() {
	if a.anomalyCancel != nil {
		a.anomalyCancel()
		a.anomalyWG.Wait()
		a.anomalyCancel = nil
	}
}

// runners returns the current anomaly detectors.
func (a *Alertd) runners() []*anomalyRunner {
	a.anomalyMu.Lock()
	defer a.anomalyMu.Unlock()
	return slices.Clone(a.anomalyRunners)
}

// engineQueryRange runs a range query on the embedded engine.
func (a *Alertd) engineQueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	return rangeQuery(ctx, a.engine, a.db, q, start, end, step)
}

// rangeQuery runs a range query on an engine over a queryable.
func rangeQuery(ctx context.Context, engine *promql.Engine, queryable storage.Queryable, q string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	qry, err := engine.NewRangeQuery(ctx, queryable, nil, q, start, end, step)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Matrix()
}

// routing is the configuration's routing tree and the named time
// intervals its routes mute and activate by.
type routing struct {
	tree      *dispatch.Route
	intervals *timeinterval.Intervener
	// shared holds the route keys (Route.Key, the path of matchers) that
	// more than one route of the tree has, such as those of sibling
	// routes with the same matchers: their groups' keys do not tell the
	// routes apart (groups).
	shared map[string]bool
}

// newRouting returns the routing of a tree.
func newRouting(tree *dispatch.Route, intervals *timeinterval.Intervener) *routing {
	r := &routing{tree: tree, intervals: intervals, shared: map[string]bool{}}
	n := map[string]int{}
	tree.Walk(func(rt *dispatch.Route) { n[rt.Key()]++ })
	for k, c := range n {
		if c > 1 {
			r.shared[k] = true
		}
	}
	return r
}

// matchRoutes names the receivers an alert's labels route to.
func (a *Alertd) matchRoutes(ls model.LabelSet) []string {
	return a.routing.Load().receivers(ls)
}

// receivers names the receivers of the routes in r that ls matches.
func (r *routing) receivers(ls model.LabelSet) []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, m := range r.tree.Match(ls) {
		out = append(out, m.RouteOpts.Receiver)
	}
	return out
}

// Reload reloads the configuration and rule files, as SIGHUP does.
func (a *Alertd) Reload() error {
	errc := make(chan error)
	select {
	case a.reloadCh <- errc:
		return <-errc
	case <-a.ctx.Done():
		return errors.New("alertd is stopping")
	}
}

// Registry returns the registry of alertd's own metrics.
func (a *Alertd) Registry() *prometheus.Registry { return a.reg }

// Storage returns the embedded TSDB.
func (a *Alertd) Storage() *tsdb.DB { return a.db }

// Start listens and starts scraping, evaluating and notifying.
func (a *Alertd) Start() error {
	lns, err := web.Listen(a.opts.Web)
	if err != nil {
		return err
	}
	a.webLns = lns
	a.startedAt = a.opts.Now()
	a.started.Store(true)
	a.anomalyMu.Lock()
	a.startAnomalyLocked()
	a.anomalyMu.Unlock()
	a.notify.Run()
	// Before the API serves: a pushed alert posted again right after the
	// start updates the restored one.
	switch n, err := a.pushedAlerts.restore(a.ctx, a.startedAt); {
	case err != nil:
		a.logger.Error("Failed to restore the pushed alerts; their sources must send them again", "restored", n, "err", err)
	case n > 0:
		a.logger.Info("Restored the pushed alerts that were firing", "restored", n)
	}
	// Those held for a check of their Alertmanager's API that the last
	// run did not see answered.
	a.upstream.resume()
	if a.scrape != nil {
		a.wg.Add(2)
		go func() {
			defer a.wg.Done()
			if err := a.discovery.Run(); err != nil && !errors.Is(err, context.Canceled) {
				a.logger.Error("Discovery manager stopped", "err", err)
			}
		}()
		go func() {
			defer a.wg.Done()
			if err := a.scrape.Run(a.discovery.SyncCh()); err != nil {
				a.logger.Error("Scrape manager stopped", "err", err)
			}
		}()
	}
	a.wg.Add(6)
	go func() {
		defer a.wg.Done()
		a.rules.Run()
	}()
	go func() {
		defer a.wg.Done()
		a.upstream.run(a.ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.runEscalation(a.ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.watchModelInfo(a.ctx)
	}()
	go func() {
		defer a.wg.Done()
		web.Serve(a.web, a.webLns, a.opts.Web, a.logger)
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer a.wg.Done()
		defer signal.Stop(hup)
		a.loop(hup)
	}()
	a.ready.Store(true)
	mode := "embedded"
	if a.remote != nil {
		mode = "remote"
	}
	for _, ln := range a.webLns {
		a.logger.Info("Serving the API", "listen_address", ln.Addr().String(), "datasource", mode)
	}
	return nil
}

// loop reloads on SIGHUP and POST /-/reload, and every resend delay holds
// alerts while the data source is down and forgets old resolved alerts.
func (a *Alertd) loop(hup <-chan os.Signal) {
	t := time.NewTicker(a.loopInterval())
	defer t.Stop()
	for {
		select {
		case <-hup:
			_ = a.reloader.Reload()
		case errc := <-a.reloadCh:
			errc <- a.reloader.Reload()
		case <-t.C:
			now := a.opts.Now()
			a.checkDatasource(now)
			if a.scrape != nil {
				a.staleness.forget(a.scrape.TargetsActive())
			}
			if err := a.store.release(a.ctx, now); err != nil {
				a.logger.Error("Failed to release alerts", "err", err)
			}
			a.expireResolvedSilences(now)
			// Silences and maintenance windows begin as time passes.
			a.suppressBegun(a.ctx, now)
			a.silencer.gc(now, a.opts.SilenceRetention)
			a.maintenance.gc(now, a.opts.MaintenanceRetention)
			a.suppressions.gc(now, a.opts.SuppressionRetention)
			a.tickLedger(now)
			a.tickActions(a.ctx, now)
			a.store.gc(now)
			if err := a.pushedAlerts.save(now); err != nil {
				a.logger.Error("Failed to save the pushed alerts", "err", err)
			}
		case <-a.ctx.Done():
			return
		}
	}
}

// loopInterval is how often the loop's pass runs: every resend delay, at
// most 15s.
func (a *Alertd) loopInterval() time.Duration { return min(a.opts.ResendDelay, 15*time.Second) }

// Addr returns the address of the first web listener.
func (a *Alertd) Addr() string {
	if len(a.webLns) == 0 {
		return ""
	}
	return a.webLns[0].Addr().String()
}

// Stop shuts alertd down: rules stop first so no half-evaluated group sends,
// then scraping, notifications (which snapshot their log) and storage. It is
// safe to call more than once.
func (a *Alertd) Stop() error {
	a.stopOnce.Do(func() {
		a.ready.Store(false)
		if !a.started.Load() {
			// The rule manager's groups wait for Run before they can
			// stop; without it Stop would wait for ever.
			go a.rules.Run()
		}
		a.rules.Stop()
		a.anomalyMu.Lock()
		a.stopAnomalyLocked()
		a.anomalyMu.Unlock()
		if a.scrape != nil {
			a.scrape.Stop()
		}
		a.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.web.Shutdown(ctx); err != nil {
			// Requests still running after the grace period: drop their
			// connections rather than leave them open past Stop.
			a.stopErr = fmt.Errorf("couldn't stop the web server within 5s: %w", err)
			_ = a.web.Close()
		}
		a.wg.Wait()
		a.upstream.wait()
		// The alerts posted since the last tick; the web server no
		// longer takes any. An alertd that never started has not
		// restored the file and must not empty it.
		if a.started.Load() {
			if err := a.pushedAlerts.save(a.opts.Now()); err != nil && a.stopErr == nil {
				a.stopErr = err
			}
		}
		a.notify.Stop()
		if err := a.ledger.close(); err != nil && a.stopErr == nil {
			a.stopErr = err
		}
		if err := a.db.Close(); err != nil && a.stopErr == nil {
			a.stopErr = err
		}
	})
	return a.stopErr
}

// Run starts alertd and stops it when ctx is done.
func (a *Alertd) Run(ctx context.Context) error {
	if err := a.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return a.Stop()
}

// notifyRules is the rule manager's NotifyFunc: it turns the rules' alerts
// into pipeline alerts as Prometheus's rules.SendAlerts turns them into
// notifier alerts (startsAt is when the alert fired, endsAt its resolution
// or ValidUntil).
func (a *Alertd) notifyRules(ctx context.Context, expr string, alerts ...*rules.Alert) {
	if len(alerts) == 0 {
		return
	}
	now := a.opts.Now()
	gen := generatorURL(a.opts.ExternalURL, expr)
	in := make([]*Alert, 0, len(alerts))
	for _, ra := range alerts {
		al := fromRuleAlert(ra, now, ra.ValidUntil)
		al.GeneratorURL = gen
		in = append(in, al)
	}
	reason := fmt.Sprintf("from alerting rule evaluating %s", expr)
	if err := a.store.receive(ctx, now, SourceRule, in, reason); err != nil {
		a.logger.Error("Failed to hand rule alerts to the notifier", "err", err)
	}
}

// onNotify records each delivery attempt in the history of the alerts it
// carried.
func (a *Alertd) onNotify(n notify.Notification) {
	fps := make([]model.Fingerprint, 0, len(n.Alerts))
	for _, al := range n.Alerts {
		fps = append(fps, al.Fingerprint())
	}
	d := Decision{Time: n.Time, Stage: "notify", Action: "notified", Reason: fmt.Sprintf("sent to %s via %s", n.Receiver, n.Integration)}
	if n.Err != nil {
		d.Action, d.Reason = "failed", fmt.Sprintf("sending to %s via %s failed: %v", n.Receiver, n.Integration, n.Err)
	}
	a.store.note(fps, d)
	switch n.Extra["event"] {
	case "acknowledge", "resolve":
		// Not a page: an escalation's update of the incident.
	default:
		a.ledger.paged(n)
	}
	a.ledger.commit()
}

// onMute records in the alerts' history that a route's time intervals kept
// a notification of them from its receiver, once for a run of muted flushes.
func (a *Alertd) onMute(m notify.Muted) {
	fps := make([]model.Fingerprint, 0, len(m.Alerts))
	for _, al := range m.Alerts {
		fps = append(fps, al.Fingerprint())
	}
	names := strings.Join(m.TimeIntervals, ", ")
	why := fmt.Sprintf("inside its mute_time_intervals %s; its first flush outside them notifies", names)
	if m.Reason == amnotify.SuppressedReasonActiveTimeInterval {
		why = fmt.Sprintf("outside all its active_time_intervals %s; its first flush inside one notifies", names)
	}
	a.store.noteOnce(fps, Decision{Time: m.Time, Stage: "notify", Action: "muted",
		Reason: fmt.Sprintf("not sent to %s: the route is %s", m.Receiver, why)})
}

// tickLedger records the rules' pending alerts and the alerts that timed
// out in the ledger, resolves there the alerts not received again once a
// restart's grace period is over, prunes it hourly and refreshes the
// precision gauge.
func (a *Alertd) tickLedger(now time.Time) {
	var ps []pendingAlert
	for _, rule := range a.rules.AlertingRules() {
		for _, ra := range rule.ActiveAlerts() {
			if ra.State == promrules.StatePending {
				ps = append(ps, pendingAlert{Labels: labelSet(ra.Labels), ActiveAt: ra.ActiveAt, Value: ra.Value})
			}
		}
	}
	a.ledger.pending(now, ps)
	// Rule alerts fire again after a restart within the for grace period
	// and an evaluation; pushed ones are posted again within their
	// resolve timeout.
	cfg := a.cfg.Load()
	grace := a.opts.ForGracePeriod + a.opts.ResendDelay + time.Duration(cfg.Global.EvaluationInterval) + time.Duration(cfg.Intake.ResolveTimeout)
	a.store.sweep(now, now.Sub(a.startedAt) > grace)
	if now.Sub(a.prunedAt) >= time.Hour {
		a.ledger.prune(now)
		a.prunedAt = now
	}
	if err := a.precision.update(a.ledger, now); err != nil {
		a.logger.Error("Failed to compute the precision from the ledger", "err", err)
	}
}

// CheckConfig loads a configuration file and checks the rule files it
// names, as a reload would. It returns the number of rules and the rule
// files.
func CheckConfig(path string) (int, []string, error) {
	cfg, err := alertconfig.LoadFile(path)
	if err != nil {
		return 0, nil, err
	}
	files, err := rules.Files(cfg.RuleFiles)
	if err != nil {
		return 0, nil, err
	}
	n, errs := rules.Check(files)
	if len(errs) > 0 {
		return n, files, errors.Join(errs...)
	}
	return n, files, nil
}
