package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

// What a prediction is, set by --output.
const (
	outputProbability = "probability"
	outputClass       = "class"
)

// options configure a server.
type options struct {
	ModelName    string
	ModelVersion string
	// Delay is the service time added to each prediction.
	Delay time.Duration
	// ErrorRate is the fraction of predictions, from 0 to 1, answered with a 500.
	ErrorRate float64
	// Output is outputProbability (the default) or outputClass.
	Output string
	// BiasShift is added to the model's intercept: a second server with one
	// is a candidate model, as a shadow of the first.
	BiasShift float64
	Logger    *slog.Logger
}

// server answers inference requests for one model. Requests are parsed with
// fastjson and answers are appended into pooled buffers, so at zero delay the
// server costs a few microseconds of CPU per prediction and never limits a proxy
// benchmark.
type server struct {
	opts   options
	logger *slog.Logger
	http   *fasthttp.Server

	parsers fastjson.ParserPool
	scratch sync.Pool // *scratch

	// predictions numbers the predictions, which makes the choice of failed ones
	// deterministic; ids numbers the OIP responses whose request had no id.
	predictions atomic.Uint64
	ids         atomic.Uint64

	// Bodies that never change, built once.
	modelsBody, modelBody, metadataBody []byte
}

// scratch holds the per-request buffers a prediction needs.
type scratch struct {
	xs   []fraud.Vector // one per instance
	ys   []float64      // probabilities, one per instance
	vals []float64      // a flattened tensor
	out  []byte         // the response body
}

// rows resets s.xs to n zero vectors.
func (s *scratch) rows(n int) {
	s.xs = slices.Grow(s.xs[:0], n)[:n]
	clear(s.xs)
}

func newServer(opts options) (*server, error) {
	if opts.ModelName == "" || strings.ContainsAny(opts.ModelName, "/:") {
		return nil, fmt.Errorf("invalid model name %q", opts.ModelName)
	}
	if opts.ModelVersion == "" || strings.Contains(opts.ModelVersion, "/") {
		return nil, fmt.Errorf("invalid model version %q", opts.ModelVersion)
	}
	if opts.ErrorRate < 0 || opts.ErrorRate > 1 {
		return nil, fmt.Errorf("error rate %v is not between 0 and 1", opts.ErrorRate)
	}
	if opts.Delay < 0 {
		return nil, fmt.Errorf("negative delay %v", opts.Delay)
	}
	switch opts.Output {
	case "":
		opts.Output = outputProbability
	case outputProbability, outputClass:
	default:
		return nil, fmt.Errorf("unknown output %q", opts.Output)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{opts: opts, logger: opts.Logger}
	s.scratch.New = func() any { return new(scratch) }
	s.http = &fasthttp.Server{
		Handler:               s.handle,
		NoDefaultServerHeader: true,
		ReadTimeout:           time.Minute,
		IdleTimeout:           5 * time.Minute,
		Logger:                fasthttpLogger{s.logger},
	}

	type tensor struct {
		Name     string `json:"name"`
		Datatype string `json:"datatype"`
		Shape    []int  `json:"shape"`
	}
	inputs := make([]tensor, 0, fraud.NumFeatures)
	for _, f := range fraud.Features {
		inputs = append(inputs, tensor{Name: f.Name, Datatype: "FP64", Shape: []int{-1}})
	}
	outputType := "FP32"
	if opts.Output == outputClass {
		outputType = "INT64"
	}
	s.modelsBody = mustJSON(map[string]any{"models": []string{opts.ModelName}})
	s.modelBody = mustJSON(map[string]any{"name": opts.ModelName, "ready": true})
	s.metadataBody = mustJSON(map[string]any{
		"name":     opts.ModelName,
		"versions": []string{opts.ModelVersion},
		"platform": "modelmon-stub",
		"inputs":   inputs,
		"outputs":  []tensor{{Name: "predict", Datatype: outputType, Shape: []int{-1}}},
	})
	return s, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// serve answers requests on ln until ctx is done, then shuts down gracefully.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// fasthttp's Shutdown closes only a listener Serve has taken: closed
	// here, it also stops a Serve whose goroutine has not run yet, which
	// would otherwise serve on. Shutdown closing it again is no error.
	ln.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.ShutdownWithContext(shutdownCtx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if serveErr := <-errc; err == nil {
		err = serveErr
	}
	return err
}

// handle routes a request.
func (s *server) handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	switch path {
	case "/v2/health/live":
		s.get(ctx, []byte(`{"live":true}`))
	case "/v2/health/ready":
		s.get(ctx, []byte(`{"ready":true}`))
	case "/ping", "/health":
		s.get(ctx, []byte("\n")) // What MLflow's scoring server answers.
	case "/invocations":
		s.predict(ctx, decodeMLflow, s.encodePredictions)
	case "/v1/models":
		s.get(ctx, s.modelsBody)
	default:
		if rest, ok := strings.CutPrefix(path, "/v1/models/"); ok {
			s.handleV1(ctx, rest)
			return
		}
		if rest, ok := strings.CutPrefix(path, "/v2/models/"); ok {
			s.handleV2(ctx, rest)
			return
		}
		s.writeError(ctx, fasthttp.StatusNotFound, "not found")
	}
}

// handleV1 serves /v1/models/{name} and /v1/models/{name}:predict (KServe v1).
func (s *server) handleV1(ctx *fasthttp.RequestCtx, rest string) {
	name, verb, hasVerb := strings.Cut(rest, ":")
	if name != s.opts.ModelName {
		s.writeError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("model %q not found", name))
		return
	}
	switch {
	case !hasVerb:
		s.get(ctx, s.modelBody)
	case verb == "predict":
		s.predict(ctx, decodeKServe, s.encodePredictions)
	default:
		s.writeError(ctx, fasthttp.StatusNotFound, "not found")
	}
}

// handleV2 serves /v2/models/{name}[/versions/{version}][/ready|/infer]
// (Open Inference Protocol).
func (s *server) handleV2(ctx *fasthttp.RequestCtx, rest string) {
	parts := strings.Split(rest, "/")
	if parts[0] != s.opts.ModelName {
		s.writeError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("model %q not found", parts[0]))
		return
	}
	parts = parts[1:]
	if len(parts) >= 2 && parts[0] == "versions" {
		if parts[1] != s.opts.ModelVersion {
			s.writeError(ctx, fasthttp.StatusNotFound,
				fmt.Sprintf("model %q version %q not found", s.opts.ModelName, parts[1]))
			return
		}
		parts = parts[2:]
	}
	switch {
	case len(parts) == 0:
		s.get(ctx, s.metadataBody)
	case len(parts) == 1 && parts[0] == "ready":
		s.get(ctx, s.modelBody)
	case len(parts) == 1 && parts[0] == "infer":
		s.predict(ctx, decodeOIP, s.encodeOIP)
	default:
		s.writeError(ctx, fasthttp.StatusNotFound, "not found")
	}
}

// get answers a GET or HEAD request with a fixed JSON body.
func (s *server) get(ctx *fasthttp.RequestCtx, body []byte) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		s.writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// A decodeFunc reads the instances of a parsed request body into sc.xs.
type decodeFunc func(v *fastjson.Value, sc *scratch) error

// An encodeFunc appends the response body for predictions ys to dst.
type encodeFunc func(dst []byte, ctx *fasthttp.RequestCtx, req *fastjson.Value, ys []float64) []byte

// predict answers a prediction request: decode, wait --delay, maybe fail, then
// run the model and encode the predictions.
func (s *server) predict(ctx *fasthttp.RequestCtx, decode decodeFunc, encode encodeFunc) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		s.writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
		return
	}
	abort, err := faultStatus(&ctx.Request.Header)
	if err != nil {
		s.writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)

	req, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		s.writeError(ctx, fasthttp.StatusBadRequest, "invalid JSON: "+parseError(err))
		return
	}
	sc.xs = sc.xs[:0]
	if err := decode(req, sc); err != nil {
		s.writeError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if len(sc.xs) == 0 {
		s.writeError(ctx, fasthttp.StatusBadRequest, "no instances")
		return
	}
	if s.opts.Delay > 0 {
		s.wait(ctx)
	}
	if abort != 0 {
		s.writeError(ctx, abort, "injected failure")
		return
	}
	if s.fail() {
		s.writeError(ctx, fasthttp.StatusInternalServerError, "injected failure")
		return
	}
	sc.ys = sc.ys[:0]
	for i := range sc.xs {
		sc.ys = append(sc.ys, fraud.ShiftedProbability(&sc.xs[i], s.opts.BiasShift))
	}
	sc.out = encode(sc.out[:0], ctx, req, sc.ys)
	ctx.SetContentType("application/json")
	ctx.SetBody(sc.out)
}

// wait blocks for the configured service time, or until the server shuts down.
func (s *server) wait(ctx *fasthttp.RequestCtx) {
	t := time.NewTimer(s.opts.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// faultHeader asks for a prediction to fail with the HTTP status it holds, from
// 400 to 599, once its request is read and --delay has passed, as a failing
// model would. examples/traffic sends it during its fault phase (--fault.ratio),
// so that a demo shows failures, and the alerts on them, without restarting the
// server; --error-rate fails requests from the start instead.
const faultHeader = "X-Fault-Abort"

// faultStatus returns the status a request's faultHeader asks for, or 0 when it
// has none.
func faultStatus(h *fasthttp.RequestHeader) (int, error) {
	v := h.Peek(faultHeader)
	if len(v) == 0 {
		return 0, nil
	}
	status, err := strconv.Atoi(string(v))
	if err != nil || status < 400 || status > 599 {
		return 0, fmt.Errorf("%s: want an HTTP status from 400 to 599, got %q", faultHeader, v)
	}
	return status, nil
}

// fail reports whether this prediction is one of the --error-rate that fail.
// The n-th prediction fails when a hash of n falls below the rate, so a run is
// repeatable and failures are spread evenly rather than in bursts.
func (s *server) fail() bool {
	if s.opts.ErrorRate <= 0 {
		return false
	}
	n := s.predictions.Add(1)
	return float64(splitmix64(n)>>11)/(1<<53) < s.opts.ErrorRate
}

// splitmix64 is the finalizer of the SplitMix64 generator: a cheap, well-mixed
// hash of x.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// encodePredictions appends {"predictions":[...]}, the answer of KServe v1 and MLflow.
func (s *server) encodePredictions(dst []byte, _ *fasthttp.RequestCtx, _ *fastjson.Value, ys []float64) []byte {
	dst = append(dst, `{"predictions":`...)
	dst = s.appendOutputs(dst, ys)
	return append(dst, '}')
}

// encodeOIP appends an Open Inference Protocol v2 response with one output tensor
// called "predict". Its id is the request's, else its X-Request-Id, else a counter.
func (s *server) encodeOIP(dst []byte, ctx *fasthttp.RequestCtx, req *fastjson.Value, ys []float64) []byte {
	dst = append(dst, `{"model_name":`...)
	dst = appendString(dst, s.opts.ModelName)
	dst = append(dst, `,"model_version":`...)
	dst = appendString(dst, s.opts.ModelVersion)
	dst = append(dst, `,"id":`...)
	if id := req.GetStringBytes("id"); len(id) > 0 {
		dst = appendString(dst, string(id))
	} else if id := ctx.Request.Header.Peek("X-Request-Id"); len(id) > 0 {
		dst = appendString(dst, string(id))
	} else {
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, s.ids.Add(1), 10)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"outputs":[{"name":"predict","shape":[`...)
	dst = strconv.AppendInt(dst, int64(len(ys)), 10)
	if s.opts.Output == outputClass {
		dst = append(dst, `],"datatype":"INT64","data":`...)
	} else {
		dst = append(dst, `],"datatype":"FP32","data":`...)
	}
	dst = s.appendOutputs(dst, ys)
	return append(dst, `}]}`...)
}

// appendOutputs appends ys as a JSON array of probabilities (as FP32) or classes.
func (s *server) appendOutputs(dst []byte, ys []float64) []byte {
	dst = append(dst, '[')
	for i, y := range ys {
		if i > 0 {
			dst = append(dst, ',')
		}
		if s.opts.Output == outputClass {
			dst = strconv.AppendInt(dst, fraud.Class(y), 10)
		} else {
			dst = strconv.AppendFloat(dst, float64(float32(y)), 'g', -1, 32)
		}
	}
	return append(dst, ']')
}

// writeError answers with status and a {"error": msg} body.
func (s *server) writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	body := append([]byte(`{"error":`), appendString(nil, msg)...)
	ctx.SetBody(append(body, '}'))
}

// parseError shortens a fastjson error, which nests one "cannot parse ...: " per
// level and quotes the rest of the body, to its innermost cause. fastjson itself
// shortens what it quotes from the body.
func parseError(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "; unparsed tail")
	if i := strings.LastIndex(msg, "cannot parse "); i >= 0 {
		msg = msg[i:]
	}
	return msg
}

// fasthttpLogger sends fasthttp's own messages (broken connections, mostly) to slog.
type fasthttpLogger struct{ logger *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.logger.Debug("HTTP server message", "detail", fmt.Sprintf(format, args...))
}
