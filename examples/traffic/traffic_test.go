package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	uuidRE        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)
)

// instances decodes body as the protocol's request and returns its instances
// as objects of named features.
func instances(t *testing.T, protocol string, body []byte) ([]map[string]any, error) {
	t.Helper()
	var req struct {
		Instances        []map[string]any `json:"instances"`
		DataframeRecords []map[string]any `json:"dataframe_records"`
		DataframeSplit   *struct {
			Columns []string `json:"columns"`
			Data    [][]any  `json:"data"`
		} `json:"dataframe_split"`
		ID     string     `json:"id"`
		Inputs []oipInput `json:"inputs"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	switch protocol {
	case protocolKServe:
		return req.Instances, nil
	case protocolMLflow:
		if req.DataframeSplit == nil {
			return req.DataframeRecords, nil
		}
		var out []map[string]any
		for _, row := range req.DataframeSplit.Data {
			require.Len(t, row, len(req.DataframeSplit.Columns))
			m := map[string]any{}
			for c, name := range req.DataframeSplit.Columns {
				m[name] = row[c]
			}
			out = append(out, m)
		}
		return out, nil
	case protocolOIP:
		require.NotEmpty(t, req.ID)
		require.Len(t, req.Inputs, fraud.NumFeatures)
		n := req.Inputs[0].Shape[0]
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{}
		}
		for _, in := range req.Inputs {
			require.Equal(t, []int{n}, in.Shape)
			require.Contains(t, []string{"FP64", "INT64"}, in.Datatype)
			for i, v := range in.Data {
				out[i][in.Name] = v
			}
		}
		return out, nil
	}
	t.Fatalf("unknown protocol %q", protocol)
	return nil, nil
}

func TestGenerator(t *testing.T) {
	for _, protocol := range []string{protocolKServe, protocolOIP, protocolMLflow, protocolMixed} {
		t.Run(protocol, func(t *testing.T) {
			g := &generator{rng: rand.New(rand.NewPCG(1, 2)), protocol: protocol, modelName: "fraud", batchMax: 5, malformedRatio: 0.2}
			seen := map[string]bool{}
			ids := map[string]bool{}
			var malformed int
			for range 300 {
				r := g.next(0)
				seen[r.protocol] = true
				require.Regexp(t, uuidRE, r.id)
				require.Regexp(t, traceparentRE, r.traceparent)
				require.False(t, ids[r.id], "ids are unique")
				ids[r.id] = true
				require.Equal(t, map[string]string{
					protocolKServe: "/v1/models/fraud:predict",
					protocolOIP:    "/v2/models/fraud/infer",
					protocolMLflow: "/invocations",
				}[r.protocol], r.path)

				rows, err := instances(t, r.protocol, r.body)
				if r.malformed {
					malformed++
					require.True(t, err != nil || bytes.Contains(r.body, []byte(`"`+badValue+`"`)), "%s", r.body)
					continue
				}
				require.NoError(t, err, "%s", r.body)
				require.Len(t, rows, r.instances)
				require.True(t, r.instances >= 1 && r.instances <= 5)
				for _, row := range rows {
					require.Len(t, row, fraud.NumFeatures)
					for j, f := range fraud.Features {
						v, ok := row[f.Name].(float64)
						require.True(t, ok, "feature %s is a number", f.Name)
						require.True(t, v >= f.Min && v <= f.Max, "feature %s = %v", f.Name, v)
						if f.Kind != fraud.Continuous {
							require.Equal(t, float64(int(v)), v, "feature %d is whole", j)
						}
					}
				}
			}
			require.InDelta(t, 60, malformed, 25)
			if protocol == protocolMixed {
				require.Len(t, seen, 3)
			} else {
				require.Equal(t, map[string]bool{protocol: true}, seen)
			}
		})
	}
}

func TestFaultPhase(t *testing.T) {
	g := &generator{faultRatio: 0.5, faultStart: time.Minute, faultDuration: 2 * time.Minute}
	for elapsed, want := range map[time.Duration]bool{
		0:                               false,
		time.Minute - time.Nanosecond:   false,
		time.Minute:                     true,
		2 * time.Minute:                 true,
		3*time.Minute - time.Nanosecond: true,
		3 * time.Minute:                 false,
	} {
		require.Equal(t, want, g.inFault(elapsed), elapsed)
	}
	g.faultDuration = 0
	require.True(t, g.inFault(time.Hour), "a duration of 0 lasts until the end")
	g.faultRatio = 0
	require.False(t, g.inFault(time.Hour), "a ratio of 0 disables it")

	// About half the requests of the phase carry the header, none outside it,
	// and outside it the traffic is what it is without a fault phase.
	newGen := func(ratio float64) *generator {
		return &generator{rng: rand.New(rand.NewPCG(5, 6)), protocol: protocolKServe, modelName: "fraud", batchMax: 3,
			faultRatio: ratio, faultStart: time.Minute, faultDuration: time.Minute}
	}
	plain, faulty := newGen(0), newGen(0.5)
	for range 100 {
		a, b := plain.next(30*time.Second), faulty.next(30*time.Second)
		require.False(t, b.fault)
		require.Equal(t, a, b)
	}
	var faults int
	for range 1000 {
		if faulty.next(90 * time.Second).fault {
			faults++
		}
	}
	require.InDelta(t, 500, faults, 60)
}

func TestDrift(t *testing.T) {
	ref := fraud.Features[0].Mean
	g := &generator{driftPeriod: 20 * time.Minute}
	require.InDelta(t, ref, g.amountMean(0), 1e-9)
	require.InDelta(t, 1.5*ref, g.amountMean(5*time.Minute), 1e-9)
	require.InDelta(t, 2*ref, g.amountMean(10*time.Minute), 1e-9)
	require.InDelta(t, ref, g.amountMean(20*time.Minute), 1e-9)
	require.Greater(t, g.amountMean(time.Minute), g.amountMean(30*time.Second), "it rises slowly")

	g.driftPeriod = 0
	require.Equal(t, ref, g.amountMean(10*time.Minute))

	// The sampled amounts follow the mean.
	g = &generator{rng: rand.New(rand.NewPCG(3, 4)), driftPeriod: 20 * time.Minute}
	mean := func(elapsed time.Duration) float64 {
		var sum float64
		for range 2000 {
			sum += g.sample(0, g.amountMean(elapsed), 0)
		}
		return sum / 2000
	}
	require.Greater(t, mean(10*time.Minute), 1.6*mean(0))
}

func TestShift(t *testing.T) {
	const feature = 9 // merchant_risk: mean 0.2, std 0.12
	g := &generator{rng: rand.New(rand.NewPCG(5, 6)), batchMax: 1, protocol: protocolKServe, modelName: "fraud",
		shift: 2, shiftFeature: feature, shiftStart: time.Minute}
	mean := func(elapsed time.Duration) float64 {
		var sum float64
		for range 2000 {
			r := g.next(elapsed)
			var body struct {
				Instances []map[string]float64 `json:"instances"`
			}
			require.NoError(t, json.Unmarshal(r.body, &body))
			sum += body.Instances[0][fraud.Features[feature].Name]
		}
		return sum / 2000
	}
	require.InDelta(t, 0.2, mean(59*time.Second), 0.01, "before the start, the reference")
	require.InDelta(t, 0.2+2*0.12, mean(61*time.Second), 0.02, "from the start, shifted by two standard deviations")

	opts := options{Target: "http://127.0.0.1:1", Rate: 1, Protocol: protocolMixed, BatchMax: 1, ModelName: "fraud",
		Shift: 1, ShiftFeature: "no_such_feature"}
	require.EqualError(t, validate(&opts), `unknown drift feature "no_such_feature"`)
}

// modelServer stands in for the sidecar: it answers 400 to what a model server
// rejects and records what it received.
type modelServer struct {
	mu       sync.Mutex
	requests int
	paths    map[string]int
	got      chan struct{}
	bodies   map[string]pathBody // by X-Request-Id, when not nil
}

type pathBody struct {
	path string
	body []byte
}

func (s *modelServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests++
	s.paths[r.URL.Path]++
	if s.bodies != nil {
		s.bodies[r.Header.Get("X-Request-Id")] = pathBody{r.URL.Path, body}
	}
	s.mu.Unlock()
	select {
	case s.got <- struct{}{}:
	default:
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		!uuidRE.MatchString(r.Header.Get("X-Request-Id")) || !traceparentRE.MatchString(r.Header.Get("traceparent")):
		w.WriteHeader(http.StatusTeapot) // Fails the test below.
	case !json.Valid(body) || bytes.Contains(body, []byte(badValue)):
		w.WriteHeader(http.StatusBadRequest)
	case r.Header.Get(faultHeader) == faultStatus:
		w.WriteHeader(http.StatusInternalServerError) // As examples/model-server does.
	case r.Header.Get(faultHeader) != "":
		w.WriteHeader(http.StatusTeapot)
	}
	_, _ = w.Write([]byte(`{}`))
}

func TestSendTraffic(t *testing.T) {
	ms := &modelServer{paths: map[string]int{}, got: make(chan struct{}, 1)}
	srv := httptest.NewServer(ms)
	defer srv.Close()

	var log bytes.Buffer
	total, err := sendTraffic(context.Background(), options{
		Target:         srv.URL + "/",
		Rate:           200,
		Protocol:       protocolMixed,
		Duration:       500 * time.Millisecond,
		BatchMax:       3,
		ModelName:      "fraud",
		MalformedRatio: 0.1,
		Seed:           42,
		ReportInterval: 100 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(&log, nil)),
	})
	require.NoError(t, err)

	ms.mu.Lock()
	defer ms.mu.Unlock()
	require.Equal(t, ms.requests, total.Sent)
	require.GreaterOrEqual(t, total.Sent, 20, "about 100 at 200/s for 0.5s")
	require.Equal(t, total.Sent, total.OK+total.ClientErrors)
	require.Equal(t, total.Malformed, total.ClientErrors, "only the malformed requests are rejected")
	require.Zero(t, total.ServerErrors+total.Failed+total.Canceled+total.Skipped)
	for path := range ms.paths {
		require.Contains(t, []string{"/v1/models/fraud:predict", "/v2/models/fraud/infer", "/invocations"}, path)
	}
	require.Contains(t, log.String(), `msg="Traffic summary"`)
	require.Contains(t, log.String(), `msg="Traffic finished"`)
	require.Equal(t, 1, strings.Count(log.String(), "Traffic finished"))
}

// With --labels.target, the ground truth of a share of the answered
// instances is posted to the sidecar's /v1/labels, each under the id the
// sidecar gives the instance, as the class index 0 or 1.
func TestSendTrafficLabels(t *testing.T) {
	ms := &modelServer{paths: map[string]int{}, got: make(chan struct{}, 1), bodies: map[string]pathBody{}}
	srv := httptest.NewServer(ms)
	defer srv.Close()
	var mu sync.Mutex
	labels := map[string]float64{}
	ls := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/labels" || r.Header.Get("Content-Type") != "application/x-ndjson" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		dec := json.NewDecoder(r.Body)
		mu.Lock()
		defer mu.Unlock()
		for dec.More() {
			var l struct {
				ID    string  `json:"id"`
				Label float64 `json:"label"`
			}
			if err := dec.Decode(&l); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			labels[l.ID] = l.Label
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer ls.Close()

	total, err := sendTraffic(context.Background(), options{
		Target: srv.URL, Rate: 200, Protocol: protocolMixed, Duration: time.Second, BatchMax: 4, ModelName: "fraud",
		MalformedRatio: 0.1, Seed: 7, LabelsTarget: ls.URL + "/", LabelsRatio: 0.5, LabelsDelay: 50 * time.Millisecond,
		LabelsInterval: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	require.Equal(t, len(labels), total.Labels)
	require.Zero(t, total.LabelErrors)
	answered, ones := 0, 0.0
	for id, pb := range ms.bodies {
		if bytes.Contains(pb.body, []byte(badValue)) || !json.Valid(pb.body) {
			continue
		}
		protocol := map[string]string{"/v1/models/fraud:predict": protocolKServe, "/v2/models/fraud/infer": protocolOIP, "/invocations": protocolMLflow}[pb.path]
		inst, err := instances(t, protocol, pb.body)
		require.NoError(t, err)
		answered += len(inst)
		for i := range inst {
			lid := id
			if len(inst) > 1 {
				lid += "/" + strconv.Itoa(i)
			}
			if v, ok := labels[lid]; ok {
				require.Contains(t, []float64{0, 1}, v)
				ones += v
				delete(labels, lid)
			}
		}
	}
	require.Empty(t, labels, "every label names an instance answered")
	require.InDelta(t, 0.5, float64(total.Labels)/float64(answered), 0.2, "about half the instances, but those answered last")
	require.Less(t, ones, float64(total.Labels)/2, "fraud is the rarer class")
}

// A sidecar that can't take labels costs the traffic nothing: the labels
// are counted as errors.
func TestSendTrafficLabelsUnreachable(t *testing.T) {
	ms := &modelServer{paths: map[string]int{}, got: make(chan struct{}, 1)}
	srv := httptest.NewServer(ms)
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	total, err := sendTraffic(context.Background(), options{
		Target: srv.URL, Rate: 200, Protocol: protocolKServe, Duration: 500 * time.Millisecond, BatchMax: 1, ModelName: "fraud",
		LabelsTarget: deadURL, LabelsRatio: 1, LabelsInterval: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	require.Equal(t, total.Sent, total.OK)
	require.Positive(t, total.LabelErrors)
	require.Zero(t, total.Labels)
}

func TestSendTrafficFaults(t *testing.T) {
	ms := &modelServer{paths: map[string]int{}, got: make(chan struct{}, 1)}
	srv := httptest.NewServer(ms)
	defer srv.Close()

	total, err := sendTraffic(context.Background(), options{
		Target:     srv.URL,
		Rate:       200,
		Protocol:   protocolKServe,
		Duration:   500 * time.Millisecond,
		BatchMax:   1,
		ModelName:  "fraud",
		FaultRatio: 1,
		FaultStart: 250 * time.Millisecond,
		Seed:       7,
	})
	require.NoError(t, err)
	require.Positive(t, total.OK, "before the fault phase")
	require.Positive(t, total.Faulted, "in the fault phase")
	require.Equal(t, total.Faulted, total.ServerErrors, "every faulted request fails with a 500")
	require.Equal(t, total.Sent, total.OK+total.ServerErrors)
}

func TestSendTrafficStopsOnCancel(t *testing.T) {
	ms := &modelServer{paths: map[string]int{}, got: make(chan struct{})}
	srv := httptest.NewServer(ms)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var (
		total counts
		err   error
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		total, err = sendTraffic(ctx, options{Target: srv.URL, Rate: 100, Protocol: protocolKServe, BatchMax: 1, ModelName: "fraud"})
	}()
	<-ms.got // Duration 0 runs until canceled.
	cancel()
	<-done
	require.NoError(t, err)
	require.Positive(t, total.Sent)
}

func TestOptions(t *testing.T) {
	valid := options{Target: "http://127.0.0.1:8081", Rate: 20, Protocol: protocolMixed, BatchMax: 8, ModelName: "fraud"}
	for name, mutate := range map[string]func(*options){
		"no scheme":          func(o *options) { o.Target = "127.0.0.1:8081" },
		"zero rate":          func(o *options) { o.Rate = 0 },
		"huge rate":          func(o *options) { o.Rate = 1e9 },
		"unknown protocol":   func(o *options) { o.Protocol = "grpc" },
		"negative duration":  func(o *options) { o.Duration = -time.Second },
		"zero batch":         func(o *options) { o.BatchMax = 0 },
		"no model":           func(o *options) { o.ModelName = "" },
		"malformed above 1":  func(o *options) { o.MalformedRatio = 2 },
		"fault above 1":      func(o *options) { o.FaultRatio = 1.5 },
		"negative fault":     func(o *options) { o.FaultRatio = -0.5 },
		"fault start < 0":    func(o *options) { o.FaultStart = -time.Second },
		"fault duration < 0": func(o *options) { o.FaultDuration = -time.Second },
		"labels target":      func(o *options) { o.LabelsTarget = "127.0.0.1:9108" },
		"labels above 1":     func(o *options) { o.LabelsTarget, o.LabelsRatio = "http://127.0.0.1:9108", 1.5 },
		"labels delay < 0":   func(o *options) { o.LabelsTarget, o.LabelsDelay = "http://127.0.0.1:9108", -time.Second },
	} {
		opts := valid
		mutate(&opts)
		_, err := sendTraffic(context.Background(), opts)
		require.Error(t, err, name)
	}
}
