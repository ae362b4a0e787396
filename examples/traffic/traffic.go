package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

// maxInFlight bounds the requests waiting for an answer; a tick that finds
// this many is skipped and counted, so a slow target cannot pile up goroutines.
const maxInFlight = 128

// maxRate bounds --rate: this is a demo generator, not a load tester.
const maxRate = 10000

// options configure a traffic run.
type options struct {
	Target   string  // base URL of the sidecar (or the model server)
	Rate     float64 // requests per second
	Protocol string  // kserve, oip, mlflow or mixed
	// Duration of the run; 0 runs until ctx is done.
	Duration       time.Duration
	BatchMax       int
	ModelName      string
	MalformedRatio float64
	DriftPeriod    time.Duration
	// FaultRatio is the fraction of requests sent with faultHeader during the
	// fault phase, which begins FaultStart into the run and lasts FaultDuration
	// (0: until the end). 0 sends none.
	FaultRatio    float64
	FaultStart    time.Duration
	FaultDuration time.Duration
	// Shift moves the mean of feature ShiftFeature by that many of its
	// reference standard deviations from ShiftStart into the run on. 0 shifts
	// nothing.
	Shift        float64
	ShiftFeature string
	ShiftStart   time.Duration
	// LabelsTarget, when set, is the base URL of the sidecar's web listener,
	// where the ground truth of LabelsRatio of the answered instances is
	// posted (POST /v1/labels) LabelsDelay after their answer.
	LabelsTarget string
	LabelsRatio  float64
	LabelsDelay  time.Duration
	// LabelsInterval is how often the labels due are posted; 0 means 1s.
	LabelsInterval time.Duration
	// Seed of the random traffic; 0 picks one.
	Seed uint64
	// ReportInterval is how often a summary is logged; 0 means 10s.
	ReportInterval time.Duration
	Logger         *slog.Logger
}

// counts are what a run or an interval of it did.
type counts struct {
	Sent         int // requests sent
	OK           int // answered 2xx
	ClientErrors int // answered 4xx
	ServerErrors int // answered 5xx or another status
	Failed       int // no answer: connection error or timeout
	Canceled     int // cut short by the end of the run
	Skipped      int // not sent: too many in flight
	Malformed    int // sent with a malformed body
	Faulted      int // sent with faultHeader
	Labels       int // labels the sidecar took
	LabelErrors  int // labels not posted: the sidecar refused or could not be reached
	latencies    []time.Duration
}

func (c *counts) add(o *counts) {
	c.Sent += o.Sent
	c.OK += o.OK
	c.ClientErrors += o.ClientErrors
	c.ServerErrors += o.ServerErrors
	c.Failed += o.Failed
	c.Canceled += o.Canceled
	c.Skipped += o.Skipped
	c.Malformed += o.Malformed
	c.Faulted += o.Faulted
	c.Labels += o.Labels
	c.LabelErrors += o.LabelErrors
}

// quantile returns the q-quantile of the recorded latencies, 0 without any.
func (c *counts) quantile(q float64) time.Duration {
	if len(c.latencies) == 0 {
		return 0
	}
	slices.Sort(c.latencies)
	return c.latencies[int(q*float64(len(c.latencies)-1))]
}

// stats collects the outcome of requests from many goroutines.
type stats struct {
	mu       sync.Mutex
	interval counts
	total    counts
}

func (s *stats) update(f func(c *counts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.interval)
}

// flush moves the interval's counts into the total and returns them.
func (s *stats) flush() counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.interval
	s.total.add(&c)
	s.interval = counts{}
	return c
}

// sendTraffic sends traffic to opts.Target until opts.Duration has passed or ctx is
// done, and returns what it did. A request still in flight when the duration
// ends is waited for; one in flight when ctx is done is canceled.
func sendTraffic(ctx context.Context, opts options) (counts, error) {
	if err := validate(&opts); err != nil {
		return counts{}, err
	}
	target := strings.TrimSuffix(opts.Target, "/")
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: maxInFlight},
	}
	defer client.CloseIdleConnections()
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	gen := &generator{
		rng:            rand.New(rand.NewPCG(seed, seed>>1^0x9e3779b97f4a7c15)),
		protocol:       opts.Protocol,
		modelName:      opts.ModelName,
		batchMax:       opts.BatchMax,
		malformedRatio: opts.MalformedRatio,
		driftPeriod:    opts.DriftPeriod,
		faultRatio:     opts.FaultRatio,
		faultStart:     opts.FaultStart,
		faultDuration:  opts.FaultDuration,
		shift:          opts.Shift,
		shiftFeature:   -1,
		shiftStart:     opts.ShiftStart,
	}
	var lab *labeller
	if opts.LabelsTarget != "" {
		// Labels draw from their own source, so that a seed makes the same
		// traffic with or without them.
		gen.labelRNG = rand.New(rand.NewPCG(seed^0x6c6162656c73, seed))
		gen.labelRatio = opts.LabelsRatio
		lab = &labeller{target: strings.TrimSuffix(opts.LabelsTarget, "/"), delay: opts.LabelsDelay, client: client}
	}
	if opts.Shift != 0 {
		gen.shiftFeature = slices.IndexFunc(fraud.Features[:], func(f fraud.Feature) bool { return f.Name == opts.ShiftFeature })
	}
	logger := opts.Logger
	logger.Info("Sending traffic", "target", target, "rate", opts.Rate, "protocol", opts.Protocol,
		"duration", opts.Duration, "batch_max", opts.BatchMax, "seed", seed)
	if opts.FaultRatio > 0 {
		logger.Info("Faults will be injected", "ratio", opts.FaultRatio, "start", opts.FaultStart, "duration", opts.FaultDuration)
	}
	if opts.Shift != 0 {
		logger.Info("A feature's distribution will shift", "feature", opts.ShiftFeature, "shift_std", opts.Shift, "start", opts.ShiftStart)
	}
	if lab != nil {
		logger.Info("Ground-truth labels will be posted", "target", lab.target, "ratio", opts.LabelsRatio, "delay", opts.LabelsDelay)
	}

	reqCtx := ctx
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / opts.Rate))
	defer tick.Stop()
	report := time.NewTicker(opts.ReportInterval)
	defer report.Stop()

	var (
		st       stats
		wg       sync.WaitGroup
		inFlight = make(chan struct{}, maxInFlight)
		start    = time.Now()
		last     = start
	)
	if lab != nil {
		lab.st = &st
		wg.Go(func() { lab.run(ctx, opts.LabelsInterval) })
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			c := st.flush()
			logSummary(logger, "Traffic finished", &c, &st.total, time.Since(last), gen.amountMean(time.Since(start)))
			return st.total, nil
		case now := <-report.C:
			c := st.flush()
			logSummary(logger, "Traffic summary", &c, &st.total, now.Sub(last), gen.amountMean(now.Sub(start)))
			last = now
		case now := <-tick.C:
			r := gen.next(now.Sub(start))
			select {
			case inFlight <- struct{}{}:
			default:
				st.update(func(c *counts) { c.Skipped++ })
				continue
			}
			wg.Go(func() {
				defer func() { <-inFlight }()
				post(reqCtx, client, target, r, &st, lab)
			})
		}
	}
}

func validate(opts *options) error {
	if !httpURL(opts.Target) {
		return fmt.Errorf("target %q is not an http(s) URL", opts.Target)
	}
	if opts.Rate <= 0 || opts.Rate > maxRate {
		return fmt.Errorf("rate %v is not between 0 and %d", opts.Rate, maxRate)
	}
	if opts.Protocol != protocolMixed && !slices.Contains(protocols, opts.Protocol) {
		return fmt.Errorf("unknown protocol %q", opts.Protocol)
	}
	if opts.Duration < 0 {
		return fmt.Errorf("negative duration %v", opts.Duration)
	}
	if opts.BatchMax < 1 {
		return fmt.Errorf("batch max %d is less than 1", opts.BatchMax)
	}
	if opts.ModelName == "" {
		return errors.New("empty model name")
	}
	if opts.MalformedRatio < 0 || opts.MalformedRatio > 1 {
		return fmt.Errorf("malformed ratio %v is not between 0 and 1", opts.MalformedRatio)
	}
	if opts.FaultRatio < 0 || opts.FaultRatio > 1 {
		return fmt.Errorf("fault ratio %v is not between 0 and 1", opts.FaultRatio)
	}
	if opts.FaultStart < 0 || opts.FaultDuration < 0 {
		return fmt.Errorf("negative fault start %v or duration %v", opts.FaultStart, opts.FaultDuration)
	}
	if opts.Shift != 0 && !slices.ContainsFunc(fraud.Features[:], func(f fraud.Feature) bool { return f.Name == opts.ShiftFeature }) {
		return fmt.Errorf("unknown drift feature %q", opts.ShiftFeature)
	}
	if opts.ShiftStart < 0 {
		return fmt.Errorf("negative drift start %v", opts.ShiftStart)
	}
	if opts.LabelsTarget != "" {
		if !httpURL(opts.LabelsTarget) {
			return fmt.Errorf("labels target %q is not an http(s) URL", opts.LabelsTarget)
		}
		if opts.LabelsRatio < 0 || opts.LabelsRatio > 1 {
			return fmt.Errorf("labels ratio %v is not between 0 and 1", opts.LabelsRatio)
		}
		if opts.LabelsDelay < 0 {
			return fmt.Errorf("negative labels delay %v", opts.LabelsDelay)
		}
		if opts.LabelsInterval <= 0 {
			opts.LabelsInterval = time.Second
		}
	}
	if opts.ReportInterval <= 0 {
		opts.ReportInterval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// httpURL reports whether s is an absolute http or https URL.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// post sends r and records its outcome; lab, when not nil, gets the
// ground truth of an answered prediction.
func post(ctx context.Context, client *http.Client, target string, r request, st *stats, lab *labeller) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+r.path, bytes.NewReader(r.body))
	if err != nil {
		panic(err) // The target was validated.
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", r.id)
	req.Header.Set("traceparent", r.traceparent)
	if r.fault {
		req.Header.Set(faultHeader, faultStatus)
	}
	begin := time.Now()
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	elapsed := time.Since(begin)
	st.update(func(c *counts) {
		c.Sent++
		if r.malformed {
			c.Malformed++
		}
		if r.fault {
			c.Faulted++
		}
		switch {
		case err != nil && ctx.Err() != nil:
			c.Canceled++
		case err != nil:
			c.Failed++
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			c.OK++
			c.latencies = append(c.latencies, elapsed)
			if lab != nil {
				lab.answered(time.Now(), r)
			}
		case resp.StatusCode >= 400 && resp.StatusCode < 500:
			c.ClientErrors++
		default:
			c.ServerErrors++
		}
	})
}

// logSummary logs one line about the last interval, with running totals.
func logSummary(logger *slog.Logger, msg string, c, total *counts, interval time.Duration, amountMean float64) {
	logger.Info(msg,
		"sent", c.Sent,
		"rate", fmt.Sprintf("%.1f", float64(c.Sent)/max(interval.Seconds(), 1e-9)),
		"ok", c.OK,
		"http_4xx", c.ClientErrors,
		"http_5xx", c.ServerErrors,
		"failed", c.Failed,
		"canceled", c.Canceled,
		"skipped", c.Skipped,
		"malformed", c.Malformed,
		"faulted", c.Faulted,
		"labels", c.Labels,
		"label_errors", c.LabelErrors,
		"p50", c.quantile(0.5).Round(10*time.Microsecond),
		"p99", c.quantile(0.99).Round(10*time.Microsecond),
		"amount_mean", fmt.Sprintf("%.1f", amountMean),
		"total_sent", total.Sent,
		"total_errors", total.ClientErrors+total.ServerErrors+total.Failed,
	)
}
