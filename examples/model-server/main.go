// Command model-server is a stub model server for modelmon's demo (make run) and
// its proxy benchmark (make bench-proxy). It serves one small real model, the
// fixed logistic regression of examples/internal/fraud, over three protocols:
//
//	KServe v1                   POST /v1/models/{name}:predict, GET /v1/models/{name}
//	Open Inference Protocol v2  POST /v2/models/{name}[/versions/{version}]/infer,
//	                            GET /v2/health/{live,ready}, /v2/models/{name}[/ready]
//	MLflow                      POST /invocations, GET /ping
//
// A prediction is the probability of fraud (or, with --output=class, the class).
// Features are read by name (amount, age, tenure_months, ... or f0 to f19) or by
// position; a missing feature is 0. A body that is not valid JSON, or not a valid
// request, is answered 400 with {"error": "..."}; an unknown path 404.
//
// Failures can be injected: --error-rate fails a fraction of the predictions with
// a 500, and a prediction request with an X-Fault-Abort header (a status from 400
// to 599, as examples/traffic --fault.ratio sends) fails with that status.
package main

import (
	"context"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		listenAddress = kingpin.Flag("listen-address", "Address to listen on for inference requests.").Default(":8080").String()
		delay         = kingpin.Flag("delay", "Service time added to each prediction, waited on a timer. Use 0 to answer at once.").Default("0s").Duration()
		modelName     = kingpin.Flag("model-name", "Name of the model in request paths and responses.").Default("fraud").String()
		modelVersion  = kingpin.Flag("model-version", "Version of the model in Open Inference Protocol responses.").Default("v1").String()
		errorRate     = kingpin.Flag("error-rate", "Fraction of predictions, from 0 to 1, answered with a 500, chosen by a repeatable pseudo-random sequence. Use 0 to disable.").Default("0").Float64()
		biasShift     = kingpin.Flag("bias-shift", "Added to the logistic regression's intercept: a second server with a shift is a candidate model, e.g. the sidecar's --shadow.upstream.").Default("0").Float64()
		output        = kingpin.Flag("output", "What a prediction is: the probability of fraud, or the class (1 from probability 0.5 up, else 0).").Default(outputProbability).Enum(outputProbability, outputClass)
	)
	promslogConfig := &promslog.Config{}
	flag.AddFlags(kingpin.CommandLine, promslogConfig)
	kingpin.HelpFlag.Short('h')
	kingpin.Parse()
	logger := promslog.New(promslogConfig)

	s, err := newServer(options{
		ModelName:    *modelName,
		ModelVersion: *modelVersion,
		Delay:        *delay,
		ErrorRate:    *errorRate,
		Output:       *output,
		BiasShift:    *biasShift,
		Logger:       logger,
	})
	if err != nil {
		logger.Error("Invalid flags", "err", err)
		return 1
	}
	ln, err := net.Listen("tcp", *listenAddress)
	if err != nil {
		logger.Error("Couldn't listen", "address", *listenAddress, "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("Serving model", "address", ln.Addr().String(), "model", *modelName, "version", *modelVersion,
		"delay", *delay, "error_rate", *errorRate, "output", *output, "bias_shift", *biasShift)
	if err := s.serve(ctx, ln); err != nil {
		logger.Error("Server stopped with error", "err", err)
		return 1
	}
	logger.Info("Server stopped")
	return 0
}
