// Command exporter is the modelmon sidecar: a transparent reverse proxy in
// front of a model server that turns its traffic into Prometheus metrics.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/cliargs"
	"github.com/modelmon/modelmon/internal/driftcli"
	"github.com/modelmon/modelmon/internal/exporter"
	"github.com/modelmon/modelmon/internal/gomemlimit"
)

func main() { os.Exit(run()) }

func run() int {
	app := kingpin.New("exporter", "The modelmon sidecar: a transparent proxy in front of a model server that turns its traffic into Prometheus metrics.")
	d := exporter.DefaultOptions()
	serve := app.Command("serve", "Run the sidecar (the default command).").Default()
	var (
		configFile  = serve.Flag("config.file", "Exporter configuration file. Empty runs on the built-in defaults.").Default("").String()
		configCheck = serve.Flag("config.check", "Validate the configuration file and the drift references, its models' and --drift.reference's, and exit.").Bool()

		upstream     = serve.Flag("proxy.upstream", "Base URL of the model server the proxy forwards to.").Default(d.Proxy.Upstream).String()
		proxyListen  = serve.Flag("proxy.listen-address", "Address on which the proxy accepts predictions.").Default(d.ProxyListenAddress).String()
		grpcUp       = serve.Flag("proxy.grpc-upstream", "URL of the model server's gRPC endpoint, http:// (cleartext HTTP/2), e.g. http://127.0.0.1:8001 for Triton, or https:// (TLS, with the --proxy.upstream-* TLS flags); the gRPC proxy is on only with it.").Default("").String()
		grpcListen   = serve.Flag("proxy.grpc-listen-address", "Address on which the gRPC proxy accepts calls, with --proxy.grpc-upstream.").Default(d.GRPCListenAddress).String()
		proxyTimeout = serve.Flag("proxy.timeout", "Longest wait for the model server's whole response, or for each piece of a streamed one; past it the client gets 504.").Default(d.Proxy.Timeout.String()).Duration()
		proxyMaxBody = serve.Flag("proxy.max-body-size", "Largest request or response body the proxy forwards.").Default(size(int64(d.Proxy.MaxBodySize))).Bytes()
		proxyConns   = serve.Flag("proxy.max-conns", "Most connections open to the model server at once.").Default(strconv.Itoa(d.Proxy.MaxConns)).Int()
		proxyIdle    = serve.Flag("proxy.idle-timeout", "How long idle keep-alive connections stay open, to clients and to the model server.").Default(d.Proxy.IdleTimeout.String()).Duration()
		proxyRead    = serve.Flag("proxy.read-timeout", "Longest time to read a client's request. Use 0 to disable.").Default("0s").Duration()
		proxyWrite   = serve.Flag("proxy.write-timeout", "Longest time to write a response to a client. Use 0 to disable.").Default("0s").Duration()
		proxyRaw     = serve.Flag("proxy.raw-syscalls", "On Linux, make the reads and writes of the proxy's TCP connections as raw system calls, which don't wake the Go runtime's monitor thread; --no-proxy.raw-syscalls makes them through the runtime's usual path.").Default("true").Bool()
		proxyDelay   = serve.Flag("proxy.shutdown-delay", "After SIGTERM or SIGINT, how long the proxy keeps serving, with /-/ready failing, each client connection closed after its response and gRPC clients sent a GOAWAY, before it stops accepting; so that Service endpoints drop the pod first. A second signal ends it early.").Default("0s").Duration()
		upTLS        = tlsFlags(serve, "proxy.upstream-", "an https:// model server", "proxy.upstream")

		queueSize    = serve.Flag("capture.queue-size", "Most captured payloads waiting to be parsed; more are dropped and counted.").Default(strconv.Itoa(d.CaptureQueueSize)).Int()
		queueBytes   = serve.Flag("capture.max-queue-bytes", "Most bytes of captured payloads waiting to be parsed, gRPC streams' kept messages included; more are dropped and counted.").Default(size(d.CaptureMaxBytes)).Bytes()
		captureBody  = serve.Flag("capture.max-body-size", "Largest body captured for parsing; larger ones are proxied but not parsed.").Default(size(int64(d.CaptureMaxBodySize))).Bytes()
		workers      = serve.Flag("capture.workers", "Number of goroutines parsing captured payloads.").Default(strconv.Itoa(d.CaptureWorkers)).Int()
		batchDelay   = serve.Flag("capture.batch-delay", "Pause of a parser after it has emptied the queue, so that under load it parses in batches. Use 0 to parse each capture at once.").Default(d.CaptureBatchDelay.String()).Duration()
		shadowUp     = serve.Flag("shadow.upstream", "Base URL of a shadow model server, http:// or https://: a candidate model that gets a copy of sampled predictions, off the hot path, whose answers are compared with the model's (modelmon_shadow_*) and never reach the client. Empty: mirror no HTTP prediction.").Default("").String()
		shadowGRPC   = serve.Flag("shadow.grpc-upstream", "URL of the shadow model server's gRPC endpoint, http:// (cleartext HTTP/2) or https:// (TLS, with the --shadow.* TLS flags): the gRPC proxy's prediction calls are mirrored to it as HTTP predictions are to --shadow.upstream, unary ones and the requests of streams alike. Empty: mirror no gRPC call.").Default("").String()
		shadowRatio  = serve.Flag("shadow.sample-ratio", "Share of the captured predictions mirrored to the shadow model server, in (0, 1].").Default(strconv.FormatFloat(d.Shadow.SampleRatio, 'g', -1, 64)).Float64()
		shadowTime   = serve.Flag("shadow.timeout", "Longest wait for the shadow model server's answer to a mirrored request, or for the next piece or answer of a streamed one.").Default(d.Shadow.Timeout.String()).Duration()
		shadowConc   = serve.Flag("shadow.concurrency", "Most mirrored requests and calls sent to the shadow model server at once, HTTP and gRPC together, and comparisons of gRPC streams' answers; as many again may wait, and more are dropped and counted (modelmon_shadow_dropped_total).").Default(strconv.Itoa(d.Shadow.Concurrency)).Int()
		shadowModels = serve.Flag("shadow.model", "Model whose predictions are mirrored to the shadow model server, as clients name it (past limits.max_models too); repeatable. None: every model's.").Strings()
		shTLS        = tlsFlags(serve, "shadow.", "an https:// shadow model server", "shadow.upstream or --shadow.grpc-upstream")
		shadowMax    = serve.Flag("shadow.max-pending", "With --labels.enabled, most of the shadow's predictions waiting for their label, so that both answers are scored against it; the oldest is dropped beyond it.").Default(strconv.Itoa(d.Shadow.MaxPending)).Int()
		plogURL      = serve.Flag("payload-log.url", "HTTP endpoint that receives the captured requests and responses as CloudEvents (binary mode, KServe's logger's event types), off the hot path. Empty: log nothing.").Default("").String()
		plogMode     = serve.Flag("payload-log.mode", "Which bodies go to --payload-log.url: all, request or response.").Default(d.PayloadLog.Mode).Enum(exporter.PayloadLogAll, exporter.PayloadLogRequest, exporter.PayloadLogResponse)
		plogRatio    = serve.Flag("payload-log.sample-ratio", "Share of the captured predictions sent to --payload-log.url, in (0, 1].").Default(strconv.FormatFloat(d.PayloadLog.SampleRatio, 'g', -1, 64)).Float64()
		plogSource   = serve.Flag("payload-log.source", "The events' source attribute. Empty: http://<hostname>:<proxy port>/.").Default("").String()
		plogExt      = serve.Flag("payload-log.extension", "Attribute added to every event, name=value (e.g. inferenceservicename=fraud, namespace=prod); repeatable. Names are 1 to 20 lowercase letters and digits.").StringMap()
		plogMeta     = serve.Flag("payload-log.metadata-header", "Request header whose values go into each event's metadata attribute, as JSON (KServe's logger's metadataHeaders); repeatable.").Strings()
		plTLS        = tlsFlags(serve, "payload-log.", "an https:// --payload-log.url", "payload-log.url")
		plogWorkers  = serve.Flag("payload-log.workers", "Number of events sent to --payload-log.url at once.").Default(strconv.Itoa(d.PayloadLog.Workers)).Int()
		plogBatch    = serve.Flag("payload-log.batch-size", "Most events one request to --payload-log.url carries: 1 sends each alone in CloudEvents' binary mode (KServe's logger's); more sends the queued events together in the batched JSON mode (application/cloudevents-batch+json), about ten times the events per second.").Default(strconv.Itoa(d.PayloadLog.BatchSize)).Int()
		plogTimeout  = serve.Flag("payload-log.timeout", "Longest wait for --payload-log.url to accept one event; a timed-out event is sent again.").Default(d.PayloadLog.Timeout.String()).Duration()
		plogQueue    = serve.Flag("payload-log.max-queue-bytes", "Most bytes of events held in memory for sending; more go to --payload-log.spool-dir, or are dropped and counted without one.").Default(size(d.PayloadLog.MaxQueueBytes)).Bytes()
		plogSpool    = serve.Flag("payload-log.spool-dir", "Directory for the events that don't fit in memory and those unsent at shutdown, sent from there later (also after a restart). Empty: no spool.").Default("").String()
		plogSpoolMax = serve.Flag("payload-log.max-spool-bytes", "Most bytes of events in --payload-log.spool-dir; more are dropped and counted.").Default(size(d.PayloadLog.MaxSpoolBytes)).Bytes()
		pushMaxBody  = serve.Flag("push.max-body-size", "Largest request body of the push API (POST /v1/observations).").Default(size(d.PushMaxBodySize)).Bytes()
		driftRef     = serve.Flag("drift.reference", "Reference of the models' inputs and output for drift detection, read again on reload: a profile (.json, from `exporter profile`) or training data (.csv, .jsonl, .parquet). Empty: learn it (--drift.learn-samples) or detect no drift.").Default("").String()
		driftPred    = serve.Flag("drift.prediction-column", "Column of the --drift.reference training data that holds the model's output.").Default("").String()
		driftLearn   = serve.Flag("drift.learn-samples", "Without --drift.reference, learn each model's reference from its first N records, then freeze it (and keep it under --storage.path). Use 0 to disable.").Default("0").Int()
		driftWindows = serve.Flag("drift.windows", "Sliding windows over which drift is scored, comma-separated.").Default("5m,1h,1d").String()
		driftAlpha   = serve.Flag("drift.alpha", "False-alarm rate of drift decisions: the share of windows flagged when nothing drifted.").Default("0.05").Float64()
		driftMethods = serve.Flag("drift.method", "Method that decides drift for a feature, as FEATURE=METHOD (psi, jensenshannon, hellinger, ks, wasserstein, chisquare, z); repeatable. Default: chosen by type and reference size, as Evidently does.").Strings()
		driftMin     = serve.Flag("drift.min-samples", "Values a window needs before its drift is scored.").Default("100").Int64()
		labelsOn     = serve.Flag("labels.enabled", "Give every captured prediction an id and join ground-truth labels posted to /v1/labels.").Bool()
		labelsHeader = serve.Flag("labels.id-header", "Request header carrying a prediction's id; a request without one gets a generated id in the same response header.").Default("X-Request-Id").String()
		labelsMax    = serve.Flag("labels.max-pending", "Most predictions waiting for their label; the oldest is evicted beyond it.").Default("1000000").Int()
		labelsTTL    = serve.Flag("labels.ttl", "How long a prediction waits for its label.").Default("24h").Duration()
		storagePath  = serve.Flag("storage.path", "Directory where the sidecar keeps state across restarts (learned drift references, drift windows, pending predictions). Empty keeps nothing.").Default("").String()
		snapshotIvl  = serve.Flag("storage.snapshot-interval", "How often the drift windows and the pending predictions are written under --storage.path while the sidecar runs (and at shutdown); 0 writes them at shutdown only.").Default("1m").Duration()
		metricsPath  = serve.Flag("web.telemetry-path", "Path under which to expose metrics.").Default(d.MetricsPath).String()
		maxRequests  = serve.Flag("web.max-requests", "Maximum number of parallel scrape requests. Use 0 to disable.").Default("40").Int()
		disableOwn   = serve.Flag("web.disable-exporter-metrics", "Exclude metrics about the exporter itself (promhttp_*, process_*, go_*).").Bool()
		disableDefs  = serve.Flag("collector.disable-defaults", "Set all collectors to disabled by default.").Bool()
		toolkitFlags = kingpinflag.AddFlags(serve, ":9108")
	)
	collectorFlags := map[string]*collectorFlag{}
	for _, r := range collector.Registered() {
		cf := &collectorFlag{def: r.EnabledByDefault}
		help := fmt.Sprintf("Enable the %s collector (default: %s).", r.Name, map[bool]string{true: "enabled", false: "disabled"}[r.EnabledByDefault])
		cf.value = serve.Flag("collector."+r.Name, help).Default(strconv.FormatBool(r.EnabledByDefault)).IsSetByUser(&cf.set).Bool()
		collectorFlags[r.Name] = cf
	}
	memLimit := &gomemlimit.Flags{}
	for _, f := range memLimit.Flags() {
		serve.Flag(f.Name, f.Help).Default(f.Default).SetValue(f.Value)
	}
	commands := addCommands(app)
	promslogConfig := &promslog.Config{}
	flag.AddFlags(app, promslogConfig)
	app.Version(version.Print("modelmon_exporter"))
	app.HelpFlag.Short('h')
	cmd, err := app.Parse(cliargs.JoinDashValues(os.Args[1:]))
	if err != nil {
		fmt.Fprintf(os.Stderr, "exporter: error: %s, try --help\n", err)
		return 2
	}
	logger := promslog.New(promslogConfig)
	if c, ok := commands[cmd]; ok {
		return c(logger)
	}

	windows, err := parseDurations(*driftWindows)
	if err != nil {
		logger.Error("Invalid --drift.windows", "err", err)
		return 2
	}
	detector := drift.DefaultOptions()
	detector.Alpha = *driftAlpha
	detector.MinSamples = *driftMin
	if detector.Methods, err = driftcli.ParseMethods("--drift.method", *driftMethods); err != nil {
		logger.Error("Invalid --drift.method", "err", err)
		return 2
	}
	driftOpts := exporter.DriftOptions{
		Reference:        *driftRef,
		PredictionColumn: *driftPred,
		LearnSamples:     *driftLearn,
		Windows:          windows,
		Detector:         detector,
	}

	if *configCheck {
		if *configFile == "" && *driftRef == "" {
			logger.Error("--config.check needs --config.file or --drift.reference")
			return 1
		}
		// The configuration and the references, --drift.reference's and
		// its models', load as at start-up.
		if err := exporter.CheckConfig(exporter.Options{ConfigFile: *configFile, Drift: driftOpts}); err != nil {
			logger.Error("Configuration is invalid", "err", err)
			return 1
		}
		logger.Info("Configuration is valid", "file", *configFile, "drift_reference", *driftRef)
		return 0
	}

	enabled := map[string]bool{}
	for name, cf := range collectorFlags {
		switch {
		case cf.set:
			enabled[name] = *cf.value
		case *disableDefs:
			enabled[name] = false
		default:
			enabled[name] = cf.def
		}
	}

	if err := memLimit.Validate(); err != nil {
		logger.Error("Invalid flag", "err", err)
		return 2
	}
	// Zero would mean the default to exporter.Options.
	if (*shadowUp != "" || *shadowGRPC != "") && (*shadowRatio == 0 || *shadowTime == 0 || *shadowConc == 0 || *shadowMax == 0) {
		logger.Error("Invalid flag", "err", "--shadow.sample-ratio, --shadow.timeout, --shadow.concurrency and --shadow.max-pending must not be 0")
		return 2
	}
	if *plogURL != "" && (*plogRatio == 0 || *plogWorkers <= 0 || *plogBatch <= 0 || *plogTimeout <= 0 || *plogQueue == 0 || *plogSpoolMax == 0) {
		logger.Error("Invalid flag", "err", "--payload-log.sample-ratio, --payload-log.workers, --payload-log.batch-size, --payload-log.timeout, --payload-log.max-queue-bytes and --payload-log.max-spool-bytes must be positive")
		return 2
	}
	logger.Info("Starting modelmon_exporter", "version", version.Info())
	logger.Info("Build context", "build_context", version.BuildContext())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := memLimit.Apply(ctx, logger); err != nil {
		logger.Warn("Could not set GOMEMLIMIT from the memory limit", "err", err)
	}
	opts := exporter.Options{
		ConfigFile:         *configFile,
		ProxyListenAddress: *proxyListen,
		GRPCListenAddress:  *grpcListen,
		Proxy: exporter.ProxyOptions{
			Upstream:      *upstream,
			GRPCUpstream:  *grpcUp,
			Timeout:       *proxyTimeout,
			MaxBodySize:   int(*proxyMaxBody),
			MaxConns:      *proxyConns,
			IdleTimeout:   *proxyIdle,
			ReadTimeout:   *proxyRead,
			WriteTimeout:  *proxyWrite,
			ShutdownDelay: *proxyDelay,
			PlainSyscalls: !*proxyRaw,
			TLS:           *upTLS,
		},
		Web:                    toolkitFlags,
		MetricsPath:            *metricsPath,
		MaxRequests:            *maxRequests,
		DisableExporterMetrics: *disableOwn,
		Collectors:             enabled,
		CaptureQueueSize:       *queueSize,
		CaptureMaxBytes:        int64(*queueBytes),
		CaptureMaxBodySize:     int(*captureBody),
		CaptureWorkers:         *workers,
		CaptureBatchDelay:      *batchDelay,
		PushMaxBodySize:        int64(*pushMaxBody),
		Shadow: exporter.ShadowOptions{
			Upstream:     *shadowUp,
			GRPCUpstream: *shadowGRPC,
			SampleRatio:  *shadowRatio,
			Timeout:      *shadowTime,
			Concurrency:  *shadowConc,
			MaxPending:   *shadowMax,
			Models:       *shadowModels,
			TLS:          *shTLS,
		},
		PayloadLog: exporter.PayloadLogOptions{
			URL:             *plogURL,
			Mode:            *plogMode,
			SampleRatio:     *plogRatio,
			Source:          *plogSource,
			Extensions:      *plogExt,
			MetadataHeaders: *plogMeta,
			TLS:             *plTLS,
			Workers:         *plogWorkers,
			BatchSize:       *plogBatch,
			Timeout:         *plogTimeout,
			MaxQueueBytes:   int64(*plogQueue),
			SpoolDir:        *plogSpool,
			MaxSpoolBytes:   int64(*plogSpoolMax),
		},
		Drift: driftOpts,
		Labels: exporter.LabelsOptions{
			Enabled:    *labelsOn,
			IDHeader:   *labelsHeader,
			MaxPending: *labelsMax,
			TTL:        *labelsTTL,
		},
		StoragePath:      *storagePath,
		SnapshotInterval: *snapshotIvl,
		Logger:           logger,
	}
	if err := exporter.Run(ctx, opts); err != nil {
		logger.Error("Exporter stopped with error", "err", err)
		return 1
	}
	return 0
}

// parseDurations parses a comma-separated list of Prometheus durations.
func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := model.ParseDuration(f)
		if err != nil {
			return nil, err
		}
		out = append(out, time.Duration(d))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no window in %q", s)
	}
	return out, nil
}

// tlsFlags declares the TLS flags of an https:// endpoint, what, named
// prefix followed by ca-file, cert-file, key-file, server-name and
// insecure-skip-verify, and returns the configuration they fill. The
// server name defaults to the host of the URL flag named by url. (A flag
// named at the end of a sentence would read, wrapped to the start of a
// help line, as a flag of its own with the full stop.)
func tlsFlags(cmd *kingpin.CmdClause, prefix, what, url string) *promconfig.TLSConfig {
	c := &promconfig.TLSConfig{}
	cmd.Flag(prefix+"ca-file", "CA certificates (PEM) that verify "+what+", instead of the system's; read again for each new connection.").StringVar(&c.CAFile)
	cmd.Flag(prefix+"cert-file", "Client certificate (PEM) presented to "+what+" that asks for one (mutual TLS); read again at each new connection, so a renewed one is used.").StringVar(&c.CertFile)
	cmd.Flag(prefix+"key-file", "Key (PEM) of the client certificate in --"+prefix+"cert-file, in a file of its own.").StringVar(&c.KeyFile)
	cmd.Flag(prefix+"server-name", "Name the certificate of "+what+" is verified against, and sent as SNI. Default: the host of --"+url+", the endpoint's URL.").StringVar(&c.ServerName)
	cmd.Flag(prefix+"insecure-skip-verify", "Do not verify the certificate "+what+" presents.").BoolVar(&c.InsecureSkipVerify)
	return c
}

// size formats a byte count as a kingpin Bytes default ("64MiB").
func size(n int64) string { return units.Base2Bytes(n).String() }

type collectorFlag struct {
	def, set bool
	value    *bool
}
