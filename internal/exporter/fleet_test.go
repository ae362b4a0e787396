package exporter

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/driftcli"
	"github.com/modelmon/modelmon/internal/driftref"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

// Two sidecars fed disjoint halves of one stream: the fleet-wide PSI that
// Prometheus computes with the generated recording rules, over their summed
// bin counters, equals the PSI of the whole stream computed here, value by
// value, against the reference.
func TestFleetPSIFromRecordingRules(t *testing.T) {
	prometheustest.Binary(t)
	up := modelServer(t)
	refPath := writeReference(t, 5000)
	profile, _, err := driftref.Load(refPath, "score")
	require.NoError(t, err)
	a := startExporter(t, up.URL, func(o *Options) { o.Drift = driftOptions(refPath) })
	b := startExporter(t, up.URL, func(o *Options) { o.Drift = driftOptions(refPath) })

	// One stream of 2,000 records, drifting slowly; even ones to a, odd to b.
	rng := rand.New(rand.NewPCG(11, 12))
	type rec struct {
		amount  float64
		country string
	}
	stream := make([]rec, 2000)
	var halves [2]strings.Builder
	for i := range stream {
		stream[i] = rec{100 + 20*(rng.NormFloat64()+float64(i)/2000), []string{"DE", "FR", "FR", "US", "NL"}[rng.IntN(5)]}
		line, err := json.Marshal(map[string]any{"model": "fleet", "features": map[string]any{"amount": stream[i].amount, "country": stream[i].country}, "prediction": 0.5})
		require.NoError(t, err)
		halves[i%2].Write(line)
		halves[i%2].WriteByte('\n')
	}
	for i, e := range []*Exporter{a, b} {
		st, body := do(t, "POST", "http://"+e.WebAddr()+"/v1/observations", halves[i].String(), "Content-Type", "application/x-ndjson")
		require.Equal(t, 200, st, body)
	}

	// The whole stream's PSI per feature, over the reference's coarse bins.
	want := map[string]float64{}
	for _, name := range []string{"amount", "country"} {
		f, ok := profile.Feature(name)
		require.True(t, ok)
		bins := f.Bins()
		ref, cur := make([]float64, len(bins)), make([]float64, len(bins))
		for i, bin := range bins {
			ref[i] = float64(bin.Count)
		}
		for _, r := range stream {
			for i, bin := range bins {
				if name == "amount" && r.amount >= bin.Lower && r.amount < bin.Upper ||
					name == "country" && (bin.Label == r.country || bin.Label == drift.OtherLabel && !hasLabel(bins, r.country)) {
					cur[i]++
					break
				}
			}
		}
		want[name] = drift.PSI(ref, cur)
		require.Greater(t, want[name], 0.0)
	}

	rules, err := driftcli.Rules(profile, driftcli.RulesOptions{Model: "fleet", Windows: []time.Duration{5 * time.Minute}})
	require.NoError(t, err)
	rulesFile := filepath.Join(t.TempDir(), "drift.rules.yml")
	require.NoError(t, os.WriteFile(rulesFile, rules, 0o644))
	prom := prometheustest.Start(t, prometheustest.Options{Targets: []string{a.WebAddr(), b.WebAddr()}, RuleFiles: []string{rulesFile}})

	for name, w := range want {
		expr := `modelmon:feature_drift_psi:total{model="fleet",feature="` + name + `"}`
		var got float64
		require.Eventually(t, func() bool {
			got, err = prom.QueryScalar(expr)
			return err == nil && math.Abs(got-w) <= 1e-9*w
		}, 60*time.Second, 250*time.Millisecond, "%s: want %v, got %v (err %v)", expr, w, got, err)
		t.Logf("fleet PSI of %s: Prometheus %.12g, whole stream %.12g", name, got, w)
	}
}

func hasLabel(bins []drift.Bin, label string) bool {
	for _, b := range bins {
		if b.Label == label {
			return true
		}
	}
	return false
}
