package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

// Protocols the generator speaks; protocolMixed picks one per request.
const (
	protocolKServe = "kserve"
	protocolOIP    = "oip"
	protocolMLflow = "mlflow"
	protocolMixed  = "mixed"
)

var protocols = []string{protocolKServe, protocolOIP, protocolMLflow}

// badValue replaces a feature value in a malformed request that is valid JSON.
const badValue = "n/a"

// faultHeader, sent with faultStatus, asks examples/model-server to fail the
// prediction with that status, as a failing model would; the sidecar counts it
// in modelmon_prediction_errors_total{reason="upstream_5xx"}.
const (
	faultHeader = "X-Fault-Abort"
	faultStatus = "500"
)

// request is one generated inference request.
type request struct {
	protocol    string
	path        string // relative to the target
	body        []byte
	id          string // the X-Request-Id, also the OIP request id
	traceparent string
	instances   int
	malformed   bool
	fault       bool    // sent with faultHeader
	truth       []truth // the labelled instances' classes
}

// generator makes requests. It is not safe for concurrent use.
type generator struct {
	rng            *rand.Rand
	protocol       string
	modelName      string
	batchMax       int
	malformedRatio float64
	driftPeriod    time.Duration
	faultRatio     float64
	faultStart     time.Duration
	faultDuration  time.Duration // 0: until the end
	shift          float64       // in standard deviations of feature shiftFeature
	shiftFeature   int           // index in fraud.Features; -1: none
	shiftStart     time.Duration
	// labelRNG draws which instances get a label, and their class; nil
	// when no labels are posted.
	labelRNG   *rand.Rand
	labelRatio float64
}

// inFault reports whether elapsed time falls in the fault phase.
func (g *generator) inFault(elapsed time.Duration) bool {
	return g.faultRatio > 0 && elapsed >= g.faultStart &&
		(g.faultDuration == 0 || elapsed < g.faultStart+g.faultDuration)
}

// amountMean returns the mean of the amount feature after elapsed time: it rises
// from its reference value to twice that and back over each drift period.
func (g *generator) amountMean(elapsed time.Duration) float64 {
	ref := fraud.Features[0].Mean
	if g.driftPeriod <= 0 {
		return ref
	}
	phase := 2 * math.Pi * float64(elapsed%g.driftPeriod) / float64(g.driftPeriod)
	return ref * (1 + (1-math.Cos(phase))/2)
}

// next makes the request to send after elapsed time.
func (g *generator) next(elapsed time.Duration) request {
	r := request{
		protocol:    g.protocol,
		id:          g.uuid(),
		traceparent: fmt.Sprintf("00-%016x%016x-%016x-01", g.rng.Uint64()|1, g.rng.Uint64(), g.rng.Uint64()|1),
		instances:   1 + g.rng.IntN(g.batchMax),
		malformed:   g.rng.Float64() < g.malformedRatio,
	}
	if r.protocol == protocolMixed {
		r.protocol = protocols[g.rng.IntN(len(protocols))]
	}
	// Outside the fault phase, no random number is drawn for it, so that a seed
	// makes the same traffic with or without one.
	r.fault = g.inFault(elapsed) && g.rng.Float64() < g.faultRatio

	// rows[i][j] is feature j of instance i: a number, or badValue.
	amountMean := g.amountMean(elapsed)
	shifted := -1
	if g.shift != 0 && elapsed >= g.shiftStart {
		shifted = g.shiftFeature
	}
	rows := make([][]any, r.instances)
	for i := range rows {
		rows[i] = make([]any, fraud.NumFeatures)
		for j := range fraud.Features {
			shift := 0.0
			if j == shifted {
				shift = g.shift
			}
			rows[i][j] = g.sample(j, amountMean, shift)
		}
	}
	if g.labelRNG != nil && !r.malformed {
		for i, row := range rows {
			if g.labelRNG.Float64() >= g.labelRatio {
				continue
			}
			var x fraud.Vector
			for j, v := range row {
				x[j] = v.(float64)
			}
			t := truth{instance: i}
			if g.labelRNG.Float64() < fraud.Probability(&x) {
				t.class = 1
			}
			r.truth = append(r.truth, t)
		}
	}
	truncate := false
	if r.malformed {
		// Half the malformed bodies are not JSON at all; the others carry a
		// string where the model wants a number.
		if truncate = g.rng.IntN(2) == 0; !truncate {
			rows[0][g.rng.IntN(fraud.NumFeatures)] = badValue
		}
	}

	var v any
	switch r.protocol {
	case protocolKServe:
		r.path = "/v1/models/" + g.modelName + ":predict"
		v = map[string]any{"instances": records(rows)}
	case protocolOIP:
		r.path = "/v2/models/" + g.modelName + "/infer"
		v = oipRequest(r.id, rows)
	case protocolMLflow:
		r.path = "/invocations"
		if g.rng.IntN(2) == 0 {
			v = map[string]any{"dataframe_records": records(rows)}
		} else {
			v = map[string]any{"dataframe_split": map[string]any{"columns": featureNames(), "data": rows}}
		}
	}
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // Only numbers and strings: cannot fail.
	}
	if truncate {
		body = body[:len(body)/2]
	}
	r.body = body
	return r
}

// sample draws feature j; amount is drawn around amountMean. shift moves the
// mean by that many reference standard deviations.
func (g *generator) sample(j int, amountMean, shift float64) float64 {
	f := &fraud.Features[j]
	if f.Kind == fraud.Binary {
		if g.rng.Float64() < f.Mean+shift*f.Std {
			return 1
		}
		return 0
	}
	mean, std := f.Mean, f.Std
	if j == 0 {
		mean, std = amountMean, f.Std*amountMean/f.Mean
	}
	mean += shift * f.Std
	x := min(max(mean+std*g.rng.NormFloat64(), f.Min), f.Max)
	if f.Kind == fraud.Count {
		return math.Round(x)
	}
	return math.Round(x*100) / 100
}

// uuid returns a random version 4 UUID.
func (g *generator) uuid() string {
	hi, lo := g.rng.Uint64(), g.rng.Uint64()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // RFC 4122 variant
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
}

// records turns rows into objects of named features.
func records(rows [][]any) []map[string]any {
	out := make([]map[string]any, len(rows))
	for i, row := range rows {
		out[i] = make(map[string]any, len(row))
		for j, v := range row {
			out[i][fraud.Features[j].Name] = v
		}
	}
	return out
}

// oipInput is an Open Inference Protocol input tensor.
type oipInput struct {
	Name     string `json:"name"`
	Shape    []int  `json:"shape"`
	Datatype string `json:"datatype"`
	Data     []any  `json:"data"`
}

// oipRequest sends one [N] column per feature, as MLServer's pandas codec does.
func oipRequest(id string, rows [][]any) map[string]any {
	inputs := make([]oipInput, fraud.NumFeatures)
	for j, f := range fraud.Features {
		in := oipInput{Name: f.Name, Shape: []int{len(rows)}, Datatype: "FP64", Data: make([]any, len(rows))}
		if f.Kind != fraud.Continuous {
			in.Datatype = "INT64"
		}
		for i, row := range rows {
			in.Data[i] = row[j]
		}
		inputs[j] = in
	}
	return map[string]any{"id": id, "inputs": inputs}
}

func featureNames() []string {
	names := make([]string, fraud.NumFeatures)
	for j, f := range fraud.Features {
		names[j] = f.Name
	}
	return names
}
