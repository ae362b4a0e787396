// Package exporter is the modelmon sidecar process: the reverse proxy in front
// of the model server, the capture queue and its parsers, the push API, and
// the web listener serving /metrics. cmd/exporter only turns flags into
// Options; tests run the whole process in-process through New and Start.
package exporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	toolkit "github.com/prometheus/exporter-toolkit/web"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/payloadlog"
	"github.com/modelmon/modelmon/internal/web"
)

// Options configure the sidecar. Zero fields take the values of
// DefaultOptions.
type Options struct {
	// ConfigFile is the YAML configuration; empty runs on the defaults.
	ConfigFile string
	// ProxyListenAddress is where clients send predictions.
	ProxyListenAddress string
	// GRPCListenAddress is where gRPC clients call, with Proxy.GRPCUpstream.
	GRPCListenAddress string
	Proxy             ProxyOptions
	// Web configures the listener for /metrics, the push API and the
	// lifecycle endpoints (exporter-toolkit: addresses, TLS, basic auth).
	Web *toolkit.FlagConfig
	// MetricsPath is where metrics are served.
	MetricsPath string
	// MaxRequests bounds parallel scrapes; 0 means no limit.
	MaxRequests int
	// DisableExporterMetrics drops the process_*, go_* and promhttp_* metrics.
	DisableExporterMetrics bool
	// Collectors enables scrape-time collectors by name; nil means each one's
	// default.
	Collectors map[string]bool

	// CaptureQueueSize bounds the captures waiting to be parsed.
	CaptureQueueSize int
	// CaptureMaxBytes bounds the bytes of captures waiting to be parsed.
	CaptureMaxBytes int64
	// CaptureMaxBodySize is the largest body captured; larger ones are proxied
	// but not parsed.
	CaptureMaxBodySize int
	// CaptureWorkers is the number of parser goroutines.
	CaptureWorkers int
	// CaptureBatchDelay is how long a parser pauses after emptying the queue,
	// so that under load it wakes once per batch rather than per request.
	// Zero (the default) parses each capture as it comes: the parser then
	// runs when a proxy goroutine blocks, without a timer of its own, which
	// costs fewer context switches wherever it was measured (BENCHMARKS.md).
	CaptureBatchDelay time.Duration
	// PushMaxBodySize bounds a push API request body, in bytes.
	PushMaxBodySize int64
	// Drift configures drift detection against a reference profile.
	Drift DriftOptions
	// Labels configures the join of ground-truth labels to predictions.
	Labels LabelsOptions
	// StoragePath is where the sidecar keeps state across restarts (learned
	// references, drift windows, pending predictions); empty keeps nothing.
	StoragePath string
	// Shadow mirrors a sample of the predictions to a shadow model server
	// and compares its answers with the model's.
	Shadow ShadowOptions
	// PayloadLog sends the captured requests and responses to an HTTP
	// endpoint as CloudEvents.
	PayloadLog PayloadLogOptions
	// SnapshotInterval is how often the drift windows and the pending
	// predictions are written there while the sidecar runs, so that a
	// crash loses at most that much; they are written at shutdown too. 0
	// writes them at shutdown only.
	SnapshotInterval time.Duration

	Logger *slog.Logger
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// DefaultOptions returns the defaults of every option.
func DefaultOptions() Options {
	return Options{
		ProxyListenAddress: ":8081",
		GRPCListenAddress:  ":8082",
		Proxy: ProxyOptions{
			Upstream:    "http://127.0.0.1:8080",
			Timeout:     60 * time.Second,
			MaxBodySize: 256 << 20,
			MaxConns:    1024,
			IdleTimeout: 90 * time.Second,
		},
		MetricsPath:        "/metrics",
		CaptureQueueSize:   4096,
		CaptureMaxBytes:    64 << 20,
		CaptureMaxBodySize: 1 << 20,
		CaptureWorkers:     1,
		PushMaxBodySize:    10 << 20,
		SnapshotInterval:   time.Minute,
		Shadow:             ShadowOptions{SampleRatio: 1, Timeout: 10 * time.Second, Concurrency: 4, MaxPending: 100000},
		PayloadLog: PayloadLogOptions{
			Mode: PayloadLogAll, SampleRatio: 1, Workers: payloadlog.DefaultWorkers, BatchSize: 1, Timeout: payloadlog.DefaultTimeout,
			MaxQueueBytes: payloadlog.DefaultMaxQueueBytes, MaxSpoolBytes: payloadlog.DefaultMaxSpoolBytes,
		},
	}
}

func (o *Options) setDefaults() {
	d := DefaultOptions()
	if o.ProxyListenAddress == "" {
		o.ProxyListenAddress = d.ProxyListenAddress
	}
	if o.GRPCListenAddress == "" {
		o.GRPCListenAddress = d.GRPCListenAddress
	}
	if o.Proxy.Upstream == "" {
		o.Proxy.Upstream = d.Proxy.Upstream
	}
	if o.Proxy.Timeout <= 0 {
		o.Proxy.Timeout = d.Proxy.Timeout
	}
	if o.Proxy.MaxBodySize <= 0 {
		o.Proxy.MaxBodySize = d.Proxy.MaxBodySize
	}
	if o.Proxy.MaxConns <= 0 {
		o.Proxy.MaxConns = d.Proxy.MaxConns
	}
	if o.Proxy.IdleTimeout <= 0 {
		o.Proxy.IdleTimeout = d.Proxy.IdleTimeout
	}
	if o.MetricsPath == "" {
		o.MetricsPath = d.MetricsPath
	}
	if o.Shadow.SampleRatio == 0 {
		o.Shadow.SampleRatio = d.Shadow.SampleRatio
	}
	if o.Shadow.Timeout == 0 {
		o.Shadow.Timeout = d.Shadow.Timeout
	}
	if o.Shadow.Concurrency == 0 {
		o.Shadow.Concurrency = d.Shadow.Concurrency
	}
	if o.Shadow.MaxPending == 0 {
		o.Shadow.MaxPending = d.Shadow.MaxPending
	}
	if o.PayloadLog.Mode == "" {
		o.PayloadLog.Mode = d.PayloadLog.Mode
	}
	if o.PayloadLog.SampleRatio == 0 {
		o.PayloadLog.SampleRatio = d.PayloadLog.SampleRatio
	}
	if o.PayloadLog.Source == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(o.ProxyListenAddress)
		o.PayloadLog.Source = "http://" + net.JoinHostPort(cmp.Or(host, "localhost"), port) + "/"
	}
	if o.CaptureQueueSize <= 0 {
		o.CaptureQueueSize = d.CaptureQueueSize
	}
	if o.CaptureMaxBytes <= 0 {
		o.CaptureMaxBytes = d.CaptureMaxBytes
	}
	if o.CaptureMaxBodySize <= 0 {
		o.CaptureMaxBodySize = d.CaptureMaxBodySize
	}
	if o.CaptureWorkers <= 0 {
		o.CaptureWorkers = d.CaptureWorkers
	}
	if o.PushMaxBodySize <= 0 {
		o.PushMaxBodySize = d.PushMaxBodySize
	}
	if o.Web == nil {
		o.Web = web.DefaultFlags(":9108")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Exporter is a running sidecar.
type Exporter struct {
	opts    Options
	logger  *slog.Logger
	reg     *prometheus.Registry
	metrics *collector.Metrics
	cfg     atomic.Pointer[runtimeConfig]
	models  *models
	queue   *queue
	obs     *observer
	proxy   *proxy
	// shadow mirrors predictions to the shadow model server; nil without
	// --shadow.upstream and --shadow.grpc-upstream.
	shadow *shadow
	// payloadLog sends captured bodies on; nil without --payload-log.url.
	payloadLog *payloadLog
	reloader   *config.Reloader[runtimeConfig]
	scrape     *collector.Exporter
	drift      *driftConfig
	windows    []string
	ready      atomic.Bool

	web      *http.Server
	proxyLn  net.Listener
	grpcLn   net.Listener // nil without a gRPC upstream
	webLns   []net.Listener
	reloadCh chan chan error
	stopping chan struct{}
	stopOnce sync.Once
	stopErr  error
	wg       sync.WaitGroup
	workers  sync.WaitGroup
}

// New builds a sidecar from o: it loads the configuration and creates every
// part, but listens on nothing until Start.
func New(o Options) (_ *Exporter, err error) {
	o.setDefaults()
	e := &Exporter{
		opts:     o,
		logger:   o.Logger,
		reg:      prometheus.NewRegistry(),
		reloadCh: make(chan chan error),
		stopping: make(chan struct{}),
	}
	e.metrics = collector.NewMetrics(e.reg)
	initPushMetrics(e.metrics)
	e.reg.MustRegister(versioncollector.NewCollector("modelmon_exporter"))
	if !o.DisableExporterMetrics {
		e.reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	dc, err := newDriftConfig(o.Drift, o.StoragePath)
	if err != nil {
		return nil, err
	}
	e.drift = dc
	e.reloader = config.NewReloader(e.reg, "modelmon_exporter", e.loadConfig, e.applyConfig,
		func() float64 { return float64(o.Now().UnixNano()) / 1e9 }, e.logger.With("component", "config"))
	if err := e.reloader.Reload(); err != nil {
		return nil, err
	}
	e.models = newModels(e.metrics, e.logger.With("component", "models"))
	e.models.onNew = e.prepareModel
	e.registerModels(e.cfg.Load(), nil)
	e.queue = newQueue(o.CaptureQueueSize, o.CaptureMaxBytes, o.CaptureMaxBodySize, e.logger.With("component", "capture"))
	e.obs = &observer{metrics: e.metrics, config: e.cfg.Load, drift: dc, now: o.Now, logger: e.logger.With("component", "drift")}
	e.obs.unnamedClass = newWarning(e.obs.logger, "Prediction names no class of the drift reference, not counted (unnamed_class)")
	if o.Labels.Enabled {
		if o.StoragePath != "" {
			if err := os.MkdirAll(o.StoragePath, 0o755); err != nil {
				return nil, fmt.Errorf("couldn't create --storage.path: %w", err)
			}
		}
		if e.obs.labels, err = newLabels(o.Labels, o.StoragePath, o.Now(), e.reg, e.metrics.LabelOverflow, e.logger.With("component", "labels")); err != nil {
			return nil, err
		}
		e.obs.labels.config = e.cfg.Load
		e.obs.labels.hasSlot = e.models.has
		e.obs.labels.applyClasses(e.cfg.Load(), nil)
		if err := e.obs.labels.configurePeers(e.cfg.Load().cfg.Labels); err != nil {
			return nil, err
		}
	}
	e.windows = windowLabels(dc.opts.Windows)
	p, err := newProxy(o.Proxy, &e.cfg, e.models, e.queue, e.metrics, o.Now, e.logger.With("component", "proxy"))
	if err != nil {
		return nil, err
	}
	e.proxy = p
	defer func() {
		// The gRPC connections exist from here on; no Stop will close them.
		if err == nil {
			return
		}
		if p.grpc != nil {
			p.grpc.conn.Close()
		}
		if e.shadow != nil {
			e.shadow.stop()
		}
	}()
	p.labels = e.obs.labels
	if o.Shadow.Upstream != "" || o.Shadow.GRPCUpstream != "" {
		if o.Shadow.GRPCUpstream != "" && p.grpc == nil {
			return nil, fmt.Errorf("--shadow.grpc-upstream=%q mirrors the gRPC proxy's calls: it needs --proxy.grpc-upstream", o.Shadow.GRPCUpstream)
		}
		sh, err := newShadow(o.Shadow, !o.Proxy.PlainSyscalls, e.queue, o.Proxy.MaxBodySize, e.cfg.Load, e.metrics.Shadow, e.metrics.LabelOverflow.WithLabelValues("class"), o.Now, e.logger.With("component", "shadow"))
		if err != nil {
			return nil, err
		}
		e.shadow = sh
		// The configured models are known already (registerModels); the
		// others are as traffic names them (prepareModel).
		for _, m := range e.models.all() {
			sh.initModel(m)
		}
		// Each proxy samples for the shadow only with its own flag: the
		// other's hot path keeps its one nil check.
		if sh.client != nil {
			p.shadow = sh
		}
		if sh.conn != nil {
			p.grpc.shadow = sh
		}
		if l := e.obs.labels; l != nil {
			if sh.pending, err = loadShadowPending(o.StoragePath, o.Shadow.MaxPending, l.ttl, o.Now(), sh.logger); err != nil {
				return nil, err
			}
			l.onOutcome = sh.labelled
			e.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: collector.ShadowPendingPredictions,
				Help: "The number of the shadow model server's predictions waiting for their label (--shadow.max-pending at most).",
			}, func() float64 { return float64(sh.pending.len()) }))
		}
	}
	if o.PayloadLog.URL != "" {
		if e.payloadLog, err = newPayloadLog(o.PayloadLog, e.reg, o.Now, e.logger.With("component", "payload log")); err != nil {
			return nil, err
		}
		p.logPayloads, p.logHeaders = true, len(o.PayloadLog.MetadataHeaders) > 0
		p.logFailed = o.PayloadLog.Mode != PayloadLogResponse
	}
	e.scrape, err = collector.NewExporter(o.Collectors, source{e}, e.logger.With("component", "collector"))
	if err != nil {
		return nil, err
	}
	e.web = &http.Server{Handler: e.routes(), ReadHeaderTimeout: 10 * time.Second}
	return e, nil
}

// prepareModel gives a new model its listed classes (models[].classes,
// model.setClasses), its shadow counters, when a shadow mirrors it, and its
// drift state: the reference, a learned reference restored from storage,
// or a learner.
func (e *Exporter) prepareModel(m *model) {
	m.setClasses(e.cfg.Load().models[m.name].classes)
	if e.shadow != nil {
		e.shadow.initModel(m)
	}
	ds, err := e.drift.stateFor(m.name, e.cfg.Load())
	if err != nil {
		e.logger.Error("No drift detection for model", "model", m.name, "err", err)
		return
	}
	m.drift = ds
	if ds != nil {
		n, err := e.drift.restoreWindows(m.name, ds)
		switch {
		case err != nil:
			e.logger.Warn("Drift windows not restored: they start empty", "model", m.name, "file", e.drift.windowsPath(m.name), "err", err)
		case n > 0:
			e.logger.Info("Restored drift windows", "model", m.name, "file", e.drift.windowsPath(m.name), "features", n)
		}
	}
	m.learn = e.drift.learnerFor(ds)
}

func (e *Exporter) loadConfig() (*runtimeConfig, error) {
	return loadConfig(e.opts.ConfigFile, e.drift)
}

// loadConfig loads the configuration file (empty: the defaults) and the
// drift references of dc and of its models.
func loadConfig(configFile string, dc *driftConfig) (*runtimeConfig, error) {
	cfg := config.Default()
	if configFile != "" {
		var err error
		if cfg, err = config.LoadFile(configFile); err != nil {
			return nil, fmt.Errorf("couldn't load configuration (--config.file=%q): %w", configFile, err)
		}
	}
	rc, err := newRuntimeConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("couldn't load configuration (--config.file=%q): %w", configFile, err)
	}
	if err := dc.loadReferences(rc, configFile); err != nil {
		return nil, err
	}
	return rc, nil
}

// CheckConfig loads what New loads before it starts anything, for
// --config.check: the configuration file (o.ConfigFile, empty for the
// defaults) and the drift references, --drift.reference's (o.Drift) and
// those its models name, each profiled and readied for o.Drift.Detector.
// It returns the error that would stop the sidecar from starting, and
// writes nothing.
func CheckConfig(o Options) error {
	_, err := loadConfig(o.ConfigFile, &driftConfig{opts: o.Drift})
	return err
}

func (e *Exporter) applyConfig(rc *runtimeConfig) error {
	if e.obs != nil && e.obs.labels != nil { // nil during New's first load, which configures them itself
		if err := e.obs.labels.configurePeers(rc.cfg.Labels); err != nil {
			return err
		}
	}
	if !e.opts.Labels.Enabled && len(rc.cfg.Labels.Peers) > 0 {
		e.logger.Warn("labels.peers is set, but without --labels.enabled there are no labels to ask the peers about", "peers", len(rc.cfg.Labels.Peers))
	}
	prev := e.cfg.Load()
	e.cfg.Store(rc)
	if e.models != nil { // nil during New's first load, which registers them itself
		e.registerModels(rc, prev)
		e.updateClasses(rc)
		e.updateDrift(rc)
	}
	// After registerModels: a model the reload gives a slot (a raised
	// limits.max_models) gets its listed classes' series.
	if e.obs != nil && e.obs.labels != nil {
		e.obs.labels.applyClasses(rc, prev)
	}
	return nil
}

// updateClasses gives each model its classes of rc (models[].classes) as
// the first its class metrics name (model.setClasses); those of a model
// whose classes the reload changed start again at 0.
func (e *Exporter) updateClasses(rc *runtimeConfig) {
	for _, m := range *e.models.m.Load() {
		if m.setClasses(rc.models[m.name].classes) {
			e.logger.Info("Counters by class started again: the model's classes changed", "model", m.name)
		}
	}
}

// updateDrift gives the models whose drift reference a reload changed
// (models[].drift added, changed or removed, --drift.reference's file
// changed) the drift state of their new one; their windows start empty. A
// reference whose profile is the same as before (a file written again
// alike, or the same profile given another way) keeps the windows.
func (e *Exporter) updateDrift(rc *runtimeConfig) {
	for _, m := range *e.models.m.Load() {
		ref, source := rc.driftReference(m.name)
		m.mu.Lock()
		cur := m.drift
		switch {
		case ref == nil && (cur == nil || cur.source == driftSourceLearned):
			// None given, none taken away: learning, or a learned
			// reference, goes on.
			m.mu.Unlock()
			continue
		case ref != nil && cur != nil && ref.digest == cur.digest:
			cur.source = source
			m.mu.Unlock()
			continue
		}
		ds, err := e.drift.stateFor(m.name, rc)
		if err == nil {
			m.drift, m.learn = ds, e.drift.learnerFor(ds)
		}
		m.mu.Unlock()
		if err != nil {
			e.logger.Error("Drift reference not changed", "model", m.name, "err", err)
			continue
		}
		source = "none"
		if ds != nil {
			source = ds.source
		}
		e.logger.Info("Drift reference changed: the model's drift windows start empty", "model", m.name, "source", source)
	}
}

// registerModels makes the configured models known, with their configured
// version, before any traffic names them. On reload (prev, the running
// configuration) a model's version changes only where the configuration
// changed it: the one traffic has shown since stays otherwise. A model
// past limits.max_models (traffic models took the slots before a reload
// added it) gets the overflow model, whose version is that of the traffic
// counted under __other__, not its own: it gets its version when a later
// reload or a restart gives it its slot.
func (e *Exporter) registerModels(rc, prev *runtimeConfig) {
	for _, m := range rc.cfg.Models {
		name := labelValue([]byte(m.Name))
		had := e.models.has(name)
		md := e.models.get([]byte(m.Name), rc.cfg.Limits.MaxModels)
		if !e.models.has(name) {
			continue
		}
		if had && prev != nil {
			if pm, ok := prev.cfg.Model(m.Name); ok && pm.Version == m.Version {
				continue
			}
		}
		md.setVersion([]byte(m.Version))
	}
}

// Reload re-reads the configuration file; a bad one leaves the running
// configuration in place and is reported in the error.
func (e *Exporter) Reload() error {
	errc := make(chan error)
	select {
	case e.reloadCh <- errc:
		return <-errc
	case <-e.stopping:
		return errors.New("exporter is stopping")
	}
}

// Registry returns the registry behind /metrics, for tests.
func (e *Exporter) Registry() *prometheus.Registry { return e.reg }

func (e *Exporter) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(e.opts.MetricsPath, e.metricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/v1/observations", &pushHandler{maxBody: e.opts.PushMaxBodySize, models: e.models, obs: e.obs, now: e.opts.Now})
	if e.obs.labels != nil {
		mux.Handle("/v1/labels", &labelsHandler{l: e.obs.labels, maxBody: e.opts.PushMaxBodySize, now: e.opts.Now})
	}
	err := web.Register(mux, web.Options{
		Name:        "modelmon exporter",
		Description: "Prometheus-native monitoring for a machine-learning model: proxy on " + e.opts.ProxyListenAddress + " in front of " + e.opts.Proxy.Upstream,
		Version:     version.Info(),
		Links: []toolkit.LandingLinks{
			{Address: e.opts.MetricsPath, Text: "Metrics"},
			{Address: "/v1/observations", Text: "Push API", Description: "POST a JSON array or NDJSON of observations"},
		},
		Ready:  e.ready.Load,
		Reload: e.Reload,
	})
	if err != nil {
		// The landing page only fails on a broken built-in template.
		panic(err)
	}
	return mux
}

func (e *Exporter) metricsHandler() http.Handler {
	var sem chan struct{}
	if e.opts.MaxRequests > 0 {
		sem = make(chan struct{}, e.opts.MaxRequests)
	}
	errLog := slog.NewLogLogger(e.logger.Handler(), slog.LevelError)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sem != nil {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			default:
				http.Error(w, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", e.opts.MaxRequests), http.StatusServiceUnavailable)
				return
			}
		}
		ctx := r.Context()
		if t := scrapeTimeout(r); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t)
			defer cancel()
		}
		promhttp.HandlerFor(e.gatherer(ctx), promhttp.HandlerOpts{
			ErrorLog:          errLog,
			ErrorHandling:     promhttp.ContinueOnError,
			EnableOpenMetrics: true,
		}).ServeHTTP(w, r)
	})
	if e.opts.DisableExporterMetrics {
		return h
	}
	return promhttp.InstrumentMetricHandler(e.reg, h)
}

// gatherer is what /metrics serves: the exporter's own metrics and those the
// scrape-time collectors compute, within ctx.
func (e *Exporter) gatherer(ctx context.Context) prometheus.Gatherer {
	scrapeReg := prometheus.NewRegistry()
	scrapeReg.MustRegister(e.scrape.WithContext(ctx))
	return prometheus.Gatherers{e.reg, scrapeReg}
}

// scrapeTimeout reads Prometheus's scrape timeout header, leaving a little
// room for the response to travel.
func scrapeTimeout(r *http.Request) time.Duration {
	v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds")
	if v == "" {
		return 0
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s*0.9*1e9) * time.Nanosecond
}

// Start listens on the proxy and web addresses and starts serving. It returns
// once the listeners are bound.
func (e *Exporter) Start() error {
	var err error
	if e.proxyLn, err = e.proxy.listen(e.opts.ProxyListenAddress); err != nil {
		return fmt.Errorf("couldn't listen on --proxy.listen-address=%q: %w", e.opts.ProxyListenAddress, err)
	}
	if e.proxy.grpc != nil {
		if e.grpcLn, err = net.Listen("tcp", e.opts.GRPCListenAddress); err != nil {
			e.proxyLn.Close()
			return fmt.Errorf("couldn't listen on --proxy.grpc-listen-address=%q: %w", e.opts.GRPCListenAddress, err)
		}
	}
	if e.webLns, err = web.Listen(e.opts.Web); err != nil {
		e.proxyLn.Close()
		if e.grpcLn != nil {
			e.grpcLn.Close()
		}
		return err
	}
	if e.shadow != nil {
		e.shadow.start(e.opts.Shadow.Concurrency)
	}
	for i := 0; i < e.opts.CaptureWorkers; i++ {
		w := &worker{q: e.queue, obs: e.obs, parsers: parserCache{}, logger: e.logger.With("component", "parser"), batchDelay: e.opts.CaptureBatchDelay, shadow: e.shadow, payloadLog: e.payloadLog}
		e.workers.Add(1)
		go func() {
			defer e.workers.Done()
			w.run()
		}()
	}
	e.wg.Add(3)
	go func() {
		defer e.wg.Done()
		if err := e.proxy.serve(); err != nil {
			e.logger.Error("Proxy server stopped", "err", err)
		}
	}()
	go func() {
		defer e.wg.Done()
		web.Serve(e.web, e.webLns, e.opts.Web, e.logger)
	}()
	if e.grpcLn != nil {
		e.proxy.grpc.start(e.grpcLn)
	}
	// Subscribe before Start returns, so a SIGHUP right after it reloads
	// rather than kills the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer e.wg.Done()
		defer signal.Stop(hup)
		e.reloadLoop(hup)
	}()
	e.ready.Store(true)
	e.logger.Info("Proxying predictions", "listen_address", e.proxyLn.Addr().String(), "upstream", e.opts.Proxy.Upstream)
	if e.grpcLn != nil {
		e.logger.Info("Proxying gRPC calls", "listen_address", e.grpcLn.Addr().String(), "upstream", e.opts.Proxy.GRPCUpstream)
	}
	for _, ln := range e.webLns {
		e.logger.Info("Serving metrics and the push API", "listen_address", ln.Addr().String(), "metrics_path", e.opts.MetricsPath)
	}
	return nil
}

// reloadLoop is the one place configuration reloads happen: on SIGHUP and on
// POST /-/reload.
func (e *Exporter) reloadLoop(hup <-chan os.Signal) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	expire := t.C
	var snapshot <-chan time.Time
	if e.opts.StoragePath != "" && e.opts.SnapshotInterval > 0 {
		st := time.NewTicker(e.opts.SnapshotInterval)
		defer st.Stop()
		snapshot = st.C
	}
	for {
		select {
		case <-hup:
			_ = e.reloader.Reload()
		case <-expire:
			if e.obs.labels != nil {
				// Bounded work a call; the next tick goes on.
				e.obs.labels.expire(e.opts.Now())
			}
		case <-snapshot:
			e.snapshot()
		case errc := <-e.reloadCh:
			errc <- e.reloader.Reload()
		case <-e.stopping:
			return
		}
	}
}

// ProxyAddr returns the address the proxy listens on.
func (e *Exporter) ProxyAddr() string { return e.proxyLn.Addr().String() }

// GRPCAddr returns the address the gRPC proxy listens on, "" without one.
func (e *Exporter) GRPCAddr() string {
	if e.grpcLn == nil {
		return ""
	}
	return e.grpcLn.Addr().String()
}

// WebAddr returns the first address the web listener listens on.
func (e *Exporter) WebAddr() string {
	if len(e.webLns) == 0 {
		return ""
	}
	return e.webLns[0].Addr().String()
}

// Stop stops accepting requests, lets those in flight finish, parses what is
// queued, saves what must survive a restart, and returns once everything has
// stopped or ctx is done. Calling it again returns the first call's error.
func (e *Exporter) Stop(ctx context.Context) error {
	e.stopOnce.Do(func() { e.stopErr = e.stop(ctx) })
	return e.stopErr
}

func (e *Exporter) stop(ctx context.Context) error {
	e.ready.Store(false)
	close(e.stopping)
	if e.obs.labels != nil {
		// First, so that no peer holds up what follows.
		e.obs.labels.peers.stop()
	}
	var errs []error
	proxyErr := e.proxy.shutdown(ctx)
	if proxyErr != nil {
		errs = append(errs, fmt.Errorf("couldn't stop the proxy: %w", proxyErr))
	}
	if e.grpcLn != nil {
		// Calls in flight end first; each client gets a GOAWAY (at the
		// start of --proxy.shutdown-delay, if there is one).
		if err := e.proxy.grpc.stop(ctx); err != nil {
			proxyErr = err
			errs = append(errs, fmt.Errorf("couldn't stop the gRPC proxy: %w", err))
		}
	}
	if e.obs.labels != nil {
		e.obs.labels.peers.close()
	}
	if err := e.web.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("couldn't stop the web server: %w", err))
	}
	if proxyErr == nil {
		// No handler runs any more, so nothing sends: let the workers drain
		// the queue and stop.
		close(e.queue.ch)
	}
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		if proxyErr == nil {
			e.workers.Wait()
			if e.shadow != nil {
				// The parsers hand over no more.
				e.shadow.stop()
			}
		}
		if e.obs.labels != nil {
			// The labels asked of the peers in the background come back
			// (stop ended their requests): those no peer took are held
			// here before the snapshot.
			e.obs.labels.peers.wait()
		}
		e.proxy.client.CloseIdleConnections()
		if e.proxy.grpc != nil {
			e.proxy.grpc.conn.Close()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	if e.payloadLog != nil {
		// After the parsers have drained the queue: what they offered is
		// sent, or spooled, or counted as dropped, by the deadline.
		if err := e.payloadLog.l.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("couldn't close the payload log: %w", err))
		}
	}
	// After the parsers have drained the queue and the shadow's senders
	// have stopped, so nothing captured or mirrored is lost, and the labels
	// asked of the peers have come back.
	if err := e.savePending(); err != nil {
		errs = append(errs, err)
	}
	if err := e.saveDrift(); err != nil {
		errs = append(errs, fmt.Errorf("couldn't save drift windows: %w", err))
	}
	return errors.Join(errs...)
}

// snapshot writes the drift windows and the pending predictions (the label
// join's and the shadow's) under --storage.path while the sidecar runs.
func (e *Exporter) snapshot() {
	start := time.Now()
	if err := e.saveDrift(); err != nil {
		e.logger.Error("Couldn't save drift windows", "err", err)
	}
	if err := e.savePending(); err != nil {
		e.logger.Error("Couldn't save pending predictions", "err", err)
	}
	e.logger.Debug("Saved state under --storage.path", "duration", time.Since(start))
}

// savePending writes the predictions waiting for their label, the label
// join's and the shadow's, under --storage.path for the next run.
func (e *Exporter) savePending() error {
	var errs []error
	if e.obs.labels != nil {
		if err := e.obs.labels.save(); err != nil {
			errs = append(errs, fmt.Errorf("couldn't save pending predictions: %w", err))
		}
	}
	if sh := e.shadow; sh != nil && sh.pending != nil {
		if err := sh.pending.save(); err != nil {
			errs = append(errs, fmt.Errorf("couldn't save the shadow's pending predictions: %w", err))
		}
	}
	return errors.Join(errs...)
}

// saveDrift writes every model's drift windows under --storage.path, for
// the next run. Each model's are encoded under its lock and written
// outside it.
func (e *Exporter) saveDrift() error {
	if e.drift.storage == "" {
		return nil
	}
	var errs []error
	for _, m := range *e.models.m.Load() {
		m.mu.Lock()
		var data []byte
		var err error
		if m.drift != nil {
			data, err = m.drift.encodeWindows()
		}
		m.mu.Unlock()
		if err == nil && data != nil {
			err = e.drift.writeWindows(m.name, data)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("model %q: %w", m.name, err))
		}
	}
	return errors.Join(errs...)
}

// Run starts the sidecar and serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	e, err := New(o)
	if err != nil {
		return err
	}
	if err := e.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	if d := o.Proxy.ShutdownDelay; d > 0 {
		// A second signal ends the delay early.
		sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		e.drain(sig, d)
		stop()
	}
	e.logger.Info("Shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.Stop(stopCtx)
}

// drain keeps the sidecar serving for d, or until ctx is done, while
// /-/ready fails, every proxied response closes its connection and gRPC
// clients get a GOAWAY: load
// balancers and Service endpoints take the pod out of rotation, and clients
// with keep-alive connections open new ones elsewhere, before the proxy's
// listener closes (--proxy.shutdown-delay).
func (e *Exporter) drain(ctx context.Context, d time.Duration) {
	e.ready.Store(false)
	e.proxy.draining.Store(true)
	if e.grpcLn != nil {
		e.proxy.grpc.drain()
	}
	e.logger.Info("Draining: not ready, still serving until the shutdown delay has passed", "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// source exposes the running sidecar to the scrape-time collectors.
type source struct{ e *Exporter }

func (s source) Models() []collector.ModelInfo {
	ms := s.e.models.list()
	cfg := s.e.cfg.Load().cfg
	for i := range ms {
		if m, ok := cfg.Model(ms[i].Name); ok {
			ms[i].FeatureImportance = m.FeatureImportance
		}
	}
	return ms
}

func (s source) CaptureQueue() collector.QueueStats { return s.e.queue.stats() }

// Drift implements collector.DriftSource.
func (s source) Drift() []collector.DriftModel {
	now := s.e.opts.Now()
	cfg := s.e.cfg.Load().cfg
	var out []collector.DriftModel
	for _, m := range s.e.models.all() {
		// The model-level decision's correction, as configured now: the
		// model's (models[].drift), else drift:'s. config.Validate has
		// checked it.
		c, a := cfg.DriftCorrection(m.name)
		corr, _ := drift.ParseCorrection(c)
		var alpha float64 // 0: the detector's, --drift.alpha
		if a != nil {
			alpha = *a
		}
		m.mu.Lock()
		if m.drift != nil {
			dm := m.drift.snapshot(m.name, now, s.e.windows)
			dm.Correction, dm.CorrectionAlpha = corr, alpha
			out = append(out, dm)
		}
		m.mu.Unlock()
	}
	return out
}
