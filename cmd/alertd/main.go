// Command alertd is modelmon's alert engine: it evaluates Prometheus rule
// files on an embedded Prometheus engine (or any Prometheus-compatible API),
// takes alerts from Prometheus and Alertmanager, and routes them to
// receivers.
package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/modelmon/modelmon/anomaly"
	"github.com/modelmon/modelmon/internal/alertd"
	"github.com/modelmon/modelmon/internal/anomalycli"
	"github.com/modelmon/modelmon/internal/cliargs"
	"github.com/modelmon/modelmon/internal/gomemlimit"
	"github.com/modelmon/modelmon/internal/outbox"
	"github.com/modelmon/modelmon/rules"
)

func main() { os.Exit(run()) }

func run() int {
	app := kingpin.New("alertd", "modelmon's alert engine: Prometheus rules on an embedded Prometheus engine or a remote Prometheus-compatible API, alert intake, routing and notification.")
	d := alertd.DefaultOptions()
	serve := app.Command("serve", "Run alertd (the default command).").Default()
	var (
		configFile   = serve.Flag("config.file", "alertd configuration file. Empty runs on the built-in defaults: no rules, no targets, no receivers.").Default("").String()
		configCheck  = serve.Flag("config.check", "Validate the configuration file and its rule files, and exit.").Bool()
		externalURL  = serve.Flag("web.external-url", "URL under which alertd is reachable, used in generator URLs and notifications. Empty derives it from the first listen address.").Default("").String()
		routePrefix  = serve.Flag("web.route-prefix", "Prefix for the web endpoints. Empty uses the path of --web.external-url.").Default("").String()
		metricsPath  = serve.Flag("web.telemetry-path", "Path under which to expose alertd's own metrics.").Default(d.MetricsPath).String()
		storagePath  = serve.Flag("storage.path", "Directory of the embedded TSDB and of alertd's state (notification log, alert ledger, silences, suppression rules).").Default(d.StoragePath).String()
		retention    = serve.Flag("storage.tsdb.retention.time", "How long the embedded TSDB keeps samples.").Default(model.Duration(d.Retention).String()).String()
		datasource   = serve.Flag("datasource.url", "Base URL of a Prometheus-compatible query API (Prometheus, Thanos, Mimir, VictoriaMetrics) that rules query instead of the embedded engine. Overrides datasource.url of the configuration. Empty uses the configuration, or the embedded engine.").Default("").String()
		queryTimeout = serve.Flag("query.timeout", "Longest time a query of the embedded engine may take before it is aborted.").Default(d.QueryTimeout.String()).Duration()
		maxSamples   = serve.Flag("query.max-samples", "Most samples a single query of the embedded engine may load into memory.").Default(strconv.Itoa(d.QueryMaxSamples)).Int()
		outage       = serve.Flag("rules.alert.for-outage-tolerance", "Longest time alertd may be down and still restore the `for` state of alerts.").Default(d.OutageTolerance.String()).Duration()
		grace        = serve.Flag("rules.alert.for-grace-period", "Least time between alertd's restart and an alert firing, for alerts whose `for` is at least this long.").Default(d.ForGracePeriod.String()).Duration()
		resend       = serve.Flag("rules.alert.resend-delay", "Least time between two sends of a rule's firing alert.").Default(d.ResendDelay.String()).Duration()
		resolvedKeep = serve.Flag("alerts.resolved-retention", "How long resolved alerts stay listed in GET /api/v1/alerts.").Default(d.ResolvedRetention.String()).Duration()
		silenceKeep  = serve.Flag("silences.retention", "How long an expired silence stays listed in GET /api/v2/silences and kept in silences.json under --storage.path after it ends, as Alertmanager's --data.retention.").Default("120h").String()
		windowKeep   = serve.Flag("maintenance.retention", "How long an expired maintenance window of the API stays listed in GET /api/v1/maintenance_windows and kept in maintenance_windows.json under --storage.path after it ends, as --silences.retention.").Default("120h").String()
		ruleKeep     = serve.Flag("suppressions.retention", "How long an expired suppression rule stays listed in GET /api/v1/suppressions and kept in suppressions.json under --storage.path after it ends, as --silences.retention.").Default("120h").String()
		ledgerKeep   = serve.Flag("ledger.retention", "How long the alert ledger under --storage.path keeps the history of alerts, incidents and verdicts that reports read.").Default(model.Duration(d.LedgerRetention).String()).String()
		obInitial    = serve.Flag("outbox.initial-backoff", "Longest wait before a failed notification's first retry; each failure doubles it (with full jitter) up to --outbox.max-backoff.").Default(outbox.DefaultInitialBackoff.String()).Duration()
		obMax        = serve.Flag("outbox.max-backoff", "Longest wait between two attempts of a notification. A receiver's Retry-After is honoured beyond it.").Default(outbox.DefaultMaxBackoff.String()).Duration()
		obMaxAge     = serve.Flag("outbox.max-age", "How long a notification is retried before it becomes a dead letter (GET /api/v1/outbox/dead_letters).").Default(outbox.DefaultMaxAge.String()).Duration()
		obRetention  = serve.Flag("outbox.retention", "How long the idempotency keys of delivered notifications and of discarded dead letters are remembered, so that none is delivered twice or after its discard.").Default(model.Duration(outbox.DefaultRetention).String()).String()
		toolkitFlags = kingpinflag.AddFlags(serve, ":9109")
	)

	checkCmd := app.Command("check-config", "Validate a configuration file and its rule files, and exit.")
	checkFile := checkCmd.Arg("config-file", "The configuration file.").Required().String()

	testCmd := app.Command("test", "Unit testing.")
	testRules := testCmd.Command("rules", "Run unit tests for rules, written in the format of `promtool test rules`.")
	testFiles := testRules.Arg("test-rule-file", "The unit test files.").Required().ExistingFiles()
	testRun := testRules.Flag("run", "Run only test groups whose name matches this regular expression; repeatable.").Strings()
	testPolicy := testCmd.Command("policy", "Run tests of a whole alerting policy: series in, the firings the configuration's rules, anomaly detectors, classification, suppression stages and routes make of them out (paged, grouped, suppressed, unrouted), and the steps of its escalation policies.")
	testPolicyFiles := testPolicy.Arg("test-file", "The policy test files.").Required().ExistingFiles()

	anomalyCmd := app.Command("anomaly", "Anomaly scoring offline.")
	anomalyScore := anomalyCmd.Command("score", "Score a CSV series (timestamp,value) for anomalies, causally: row i's score uses rows 0..i only. Writes timestamp,value,anomaly_score, one row per input row, in input order.")
	anomalyIn := anomalyScore.Flag("input", "CSV file with a timestamp,value header (timestamps RFC 3339, 2006-01-02 15:04:05 or Unix seconds), or - for stdin.").Required().String()
	anomalyOut := anomalyScore.Flag("output", "CSV file to write, or - for stdout.").Required().String()
	anomalyAlg := anomalyScore.Flag("algorithm", "Detector: "+strings.Join(anomaly.Algorithms(), ", ")+".").Default(anomaly.Default).Enum(anomaly.Algorithms()...)

	replayCmd := app.Command("replay", "Run the rules, anomaly detectors, classification, suppression and escalation policies of a configuration over a historical range of the embedded TSDB or a remote data source, and report which alerts would have paged, been suppressed or grouped and whom escalation would have paged — and, with --compare, what a second configuration changes.")
	var ra replayArgs
	replayCmd.Flag("config", "The configuration to replay.").Required().ExistingFileVar(&ra.config)
	replayCmd.Flag("compare", "A second configuration, replayed over the same range and compared with the first.").ExistingFileVar(&ra.compare)
	replayCmd.Flag("from", "Start of the range: RFC 3339 or Unix seconds.").Required().StringVar(&ra.from)
	replayCmd.Flag("to", "End of the range: RFC 3339 or Unix seconds. Default: now.").StringVar(&ra.to)
	replayCmd.Flag("step", "Evaluation interval of the replay. Default: the configuration's global evaluation_interval.").DurationVar(&ra.step)
	replayCmd.Flag("storage.path", "alertd's storage directory, whose embedded TSDB holds the history.").Default(d.StoragePath).StringVar(&ra.storagePath)
	replayCmd.Flag("storage.tsdb.path", "A TSDB directory to read instead of the one under --storage.path, such as a Prometheus server's data directory.").StringVar(&ra.tsdbDir)
	replayCmd.Flag("datasource.url", "Read the history from this Prometheus-compatible query API instead of a TSDB. Default: the configuration's datasource.url.").StringVar(&ra.datasource)
	replayCmd.Flag("query.lookback-delta", "How far back the engine looks for a series' latest sample, as Prometheus's flag.").Default("5m").DurationVar(&ra.lookback)
	replayCmd.Flag("output", "Report format.").Default("text").EnumVar(&ra.output, "text", "json")
	replayCmd.Flag("fail-on-more-pages", "Exit with status 3 when the --compare configuration pages more than --config, to gate rule changes in CI.").BoolVar(&ra.failOnMorePages)
	replayCmd.Flag("acknowledgements", "A YAML or JSON file of acknowledgements to replay, as policy tests write them (at: a duration after --from, RFC 3339 or Unix seconds; labels; by). Empty replays none from a file.").ExistingFileVar(&ra.acks)
	replayCmd.Flag("acknowledgements.from-ledger", "Read the alert ledger under --storage.path and replay the acknowledgements operators gave over the range, at their times.").BoolVar(&ra.acksFromLedger)
	replayCmd.Flag("silences", "A JSON file of silences created through the API, applied over their own times with the configuration's: GET /api/v2/silences's answer (alertd's or an Alertmanager's, or amtool silence query -o json), or alertd's silences.json under --storage.path; - reads stdin. Empty applies the configuration's silences only.").StringVar(&ra.silences)
	replayCmd.Flag("fail-on-more-escalations", "Exit with status 3 when the --compare configuration's escalation policies notify more often than --config's (levels notified: trigger, escalate, repeat).").BoolVar(&ra.failOnMoreEsc)

	memLimit := &gomemlimit.Flags{}
	for _, f := range memLimit.Flags() {
		serve.Flag(f.Name, f.Help).Default(f.Default).SetValue(f.Value)
	}
	promslogConfig := &promslog.Config{}
	flag.AddFlags(app, promslogConfig)
	app.Version(version.Print("alertd"))
	app.HelpFlag.Short('h')
	cmd, err := app.Parse(cliargs.JoinDashValues(os.Args[1:]))
	if err != nil {
		fmt.Fprintf(os.Stderr, "alertd: error: %s, try --help\n", err)
		return 2
	}
	logger := promslog.New(promslogConfig)

	switch cmd {
	case anomalyScore.FullCommand():
		if err := anomalycli.ScoreFile(*anomalyIn, *anomalyOut, *anomalyAlg); err != nil {
			fmt.Fprintln(os.Stderr, "alertd: error:", err)
			return 1
		}
		return 0
	case checkCmd.FullCommand():
		return checkConfig(*checkFile)
	case replayCmd.FullCommand():
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runReplay(ctx, ra, logger)
	case testPolicy.FullCommand():
		ok, err := alertd.RunPolicyTests(context.Background(), *testPolicyFiles, os.Stdout, logger)
		if err != nil || !ok {
			return 1
		}
		return 0
	case testRules.FullCommand():
		ok, err := rules.RunTests(*testFiles, rules.TestOptions{Out: os.Stdout, Run: *testRun})
		if err != nil {
			fmt.Fprintln(os.Stderr, "alertd: error:", err)
			return 1
		}
		if !ok {
			return 1
		}
		return 0
	}
	if *configCheck {
		if *configFile == "" {
			logger.Error("--config.check needs --config.file")
			return 1
		}
		return checkConfig(*configFile)
	}

	ret, err := model.ParseDuration(*retention)
	if err != nil {
		logger.Error("Invalid --storage.tsdb.retention.time", "err", err)
		return 2
	}
	var silenceRetention, windowRetention, ruleRetention, ledgerRetention, obKeep model.Duration
	for _, f := range []struct {
		name, value, example string
		d                    *model.Duration
	}{
		{"silences.retention", *silenceKeep, "120h", &silenceRetention},
		{"maintenance.retention", *windowKeep, "120h", &windowRetention},
		{"suppressions.retention", *ruleKeep, "120h", &ruleRetention},
		{"ledger.retention", *ledgerKeep, "90d", &ledgerRetention},
		{"outbox.retention", *obRetention, "7d", &obKeep},
	} {
		if *f.d, err = model.ParseDuration(f.value); err != nil || *f.d <= 0 {
			logger.Error(fmt.Sprintf("Invalid --%s: want a positive duration such as %s", f.name, f.example), "value", f.value)
			return 2
		}
	}
	ext, err := computeExternalURL(*externalURL, (*toolkitFlags.WebListenAddresses)[0])
	if err != nil {
		logger.Error("Invalid --web.external-url", "err", err)
		return 2
	}
	prefix := *routePrefix
	if prefix == "" {
		prefix = ext.Path
	}

	if err := memLimit.Validate(); err != nil {
		logger.Error("Invalid flag", "err", err)
		return 2
	}
	logger.Info("Starting alertd", "version", version.Info())
	logger.Info("Build context", "build_context", version.BuildContext())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := memLimit.Apply(ctx, logger); err != nil {
		logger.Warn("Could not set GOMEMLIMIT from the memory limit", "err", err)
	}
	a, err := alertd.New(alertd.Options{
		ConfigFile:           *configFile,
		Web:                  toolkitFlags,
		ExternalURL:          ext,
		RoutePrefix:          prefix,
		MetricsPath:          *metricsPath,
		StoragePath:          *storagePath,
		Retention:            time.Duration(ret),
		DatasourceURL:        *datasource,
		QueryTimeout:         *queryTimeout,
		QueryMaxSamples:      *maxSamples,
		OutageTolerance:      *outage,
		ForGracePeriod:       *grace,
		ResendDelay:          *resend,
		ResolvedRetention:    *resolvedKeep,
		SilenceRetention:     time.Duration(silenceRetention),
		MaintenanceRetention: time.Duration(windowRetention),
		SuppressionRetention: time.Duration(ruleRetention),
		LedgerRetention:      time.Duration(ledgerRetention),
		Outbox: outbox.Options{
			InitialBackoff: *obInitial, MaxBackoff: *obMax, MaxAge: *obMaxAge, Retention: time.Duration(obKeep),
		},
		Logger: logger,
	})
	if err != nil {
		logger.Error("Couldn't start alertd", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		logger.Error("alertd stopped with error", "err", err)
		return 1
	}
	return 0
}

// checkConfig validates a configuration file and the rule files it names,
// printing what it checked, as promtool check config does.
func checkConfig(file string) int {
	fmt.Println("Checking", file)
	n, files, err := alertd.CheckConfig(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "  FAILED:")
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "   ", line)
		}
		return 1
	}
	fmt.Printf("  SUCCESS: %d rule files, %d rules found\n", len(files), n)
	return 0
}

// computeExternalURL derives the external URL from the listen address when
// none is given, as Prometheus does.
func computeExternalURL(u, listenAddr string) (*url.URL, error) {
	if u == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, err
		}
		_, port, _ := strings.Cut(listenAddr, ":")
		u = fmt.Sprintf("http://%s:%s/", host, port)
	}
	eu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if eu.Scheme != "http" && eu.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", u)
	}
	eu.Path = strings.TrimRight(eu.Path, "/")
	return eu, nil
}
