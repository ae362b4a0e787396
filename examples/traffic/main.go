// Command traffic sends a steady stream of inference requests to modelmon's
// sidecar for the demo (make run). Requests use the KServe v1, Open Inference
// Protocol v2 or MLflow protocol, carry an X-Request-Id and a W3C traceparent,
// and hold 1 to --batch-max instances of the features of examples/internal/fraud.
// The mean of amount drifts slowly (see --drift-period), and a few bodies are
// malformed (see --malformed-ratio), so that the dashboards show drift, errors
// and parse failures. It logs a one-line summary every 10s, and stops after
// --duration or on SIGINT or SIGTERM.
//
// With --fault.ratio, a fault phase that begins --fault.start into the run and
// lasts --fault.duration sends that fraction of the requests with an
// X-Fault-Abort: 500 header, which examples/model-server answers with a 500,
// so that alerts on failed predictions fire. For the demo,
//
//	traffic --fault.ratio=0.5 --fault.start=20s --fault.duration=3m
//
// fails half the requests from 20s to 3m20s. Scraped and evaluated every 5s
// from the start, the error ratio over 5 minutes passes 25% at about 35s, so
// ModelPredictionErrorRatioHigh (severity critical, rules/serving.rules.yml)
// fires at about 1m35s and resolves at about 6m; the warning (above 5% for 10
// minutes) stays pending.
//
// With --drift.shift, the distribution of one feature (--drift.feature) shifts
// abruptly --drift.start into the run: its mean moves by that many standard
// deviations of its reference and stays there, as when an upstream feed
// changes its units. For the demo,
//
//	traffic --drift.feature=amount --drift.shift=1.5 --drift.start=75s
//
// makes the sidecar's drift scores of amount jump 75s in.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
)

func main() { os.Exit(run()) }

func run() int {
	var opts options
	kingpin.Flag("target", "Base URL to send requests to: the sidecar's proxy address.").Default("http://127.0.0.1:8081").StringVar(&opts.Target)
	kingpin.Flag("rate", "Requests per second.").Default("20").Float64Var(&opts.Rate)
	kingpin.Flag("protocol", "Protocol of the requests; mixed picks one at random for each request.").Default(protocolMixed).EnumVar(&opts.Protocol, protocolKServe, protocolOIP, protocolMLflow, protocolMixed)
	kingpin.Flag("duration", "How long to send traffic. Use 0 to run until interrupted.").Default("0s").DurationVar(&opts.Duration)
	kingpin.Flag("batch-max", "Most instances in one request; each request has from 1 to this many.").Default("8").IntVar(&opts.BatchMax)
	kingpin.Flag("model-name", "Name of the model in request paths.").Default("fraud").StringVar(&opts.ModelName)
	kingpin.Flag("malformed-ratio", "Fraction of requests, from 0 to 1, sent with a malformed body. Use 0 to disable.").Default("0.01").Float64Var(&opts.MalformedRatio)
	kingpin.Flag("drift-period", "Period over which the mean of amount rises to twice its reference value and back. Use 0 to disable drift.").Default("20m").DurationVar(&opts.DriftPeriod)
	kingpin.Flag("drift.feature", "Feature whose distribution shifts from --drift.start on.").Default("amount").StringVar(&opts.ShiftFeature)
	kingpin.Flag("drift.shift", "Shift of the mean of --drift.feature from --drift.start on, in standard deviations of its reference (for a binary feature, of the share of ones). Use 0 to disable.").Default("0").Float64Var(&opts.Shift)
	kingpin.Flag("drift.start", "How long after the start of the run the shift of --drift.feature begins.").Default("1m").DurationVar(&opts.ShiftStart)
	kingpin.Flag("fault.ratio", "Fraction of requests, from 0 to 1, sent during the fault phase with an X-Fault-Abort: 500 header, which the example model server answers with a 500. Use 0 to disable.").Default("0").Float64Var(&opts.FaultRatio)
	kingpin.Flag("fault.start", "How long after the start of the run the fault phase begins.").Default("1m").DurationVar(&opts.FaultStart)
	kingpin.Flag("fault.duration", "How long the fault phase lasts. Use 0 to last until the end of the run.").Default("0s").DurationVar(&opts.FaultDuration)
	kingpin.Flag("labels.target", "Base URL of the sidecar's web listener, where the ground truth of answered predictions is posted (POST /v1/labels, as class index 0 or 1). Empty posts none.").Default("").StringVar(&opts.LabelsTarget)
	kingpin.Flag("labels.ratio", "Fraction of the answered instances, from 0 to 1, whose label is posted.").Default("0.8").Float64Var(&opts.LabelsRatio)
	kingpin.Flag("labels.delay", "How long after its answer a prediction's label is posted.").Default("10s").DurationVar(&opts.LabelsDelay)
	kingpin.Flag("seed", "Seed of the random traffic. Use 0 for a different one on each run.").Default("0").Uint64Var(&opts.Seed)
	promslogConfig := &promslog.Config{}
	flag.AddFlags(kingpin.CommandLine, promslogConfig)
	kingpin.HelpFlag.Short('h')
	kingpin.Parse()
	opts.Logger = promslog.New(promslogConfig)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := sendTraffic(ctx, opts); err != nil {
		opts.Logger.Error("Traffic stopped with error", "err", err)
		return 1
	}
	return 0
}
