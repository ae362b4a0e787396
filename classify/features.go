package classify

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// feature is one non-zero input of the model: a readable name, hashed into a
// weight slot, and its value.
type feature struct {
	name string
	x    float64
}

// features turns a into the model's sparse inputs, in a fixed order. Absent or
// unremarkable facts (no value, no flaps, no deploy) add no feature, so they
// carry no weight shared across unrelated alerts. Categorical facts have
// value 1; buckets keep the features few and readable.
func features(a Alert, now time.Time, loc *time.Location) []feature {
	fs := make([]feature, 0, len(a.Labels)+8)
	names := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fs = append(fs, feature{k + "=" + strconv.Quote(a.Labels[k]), 1})
	}
	if a.Source != "" {
		fs = append(fs, feature{"source=" + a.Source, 1})
	}
	if b := valueBucket(a.Value); b != "" {
		fs = append(fs, feature{"value" + b, 1})
	}
	if b := scoreBucket(a.AnomalyScore); b != "" {
		fs = append(fs, feature{"anomaly_score" + b, 1})
	}
	if !a.StartsAt.IsZero() {
		fs = append(fs, feature{"firing_for" + durationBucket(a.firingFor(now)), 1})
	}
	if a.FlapCount > 0 {
		fs = append(fs, feature{"flaps" + countBucket(a.FlapCount), 1})
	}
	if a.RecentDeploy {
		fs = append(fs, feature{"recent_deploy", 1})
	}
	t := now.In(loc)
	fs = append(fs, feature{fmt.Sprintf("hour=%02d-%02d", t.Hour()/6*6, t.Hour()/6*6+6), 1})
	if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday {
		fs = append(fs, feature{"weekend", 1})
	}
	if n := a.PriorFalsePositives + a.PriorTruePositives; n > 0 && a.PriorFalsePositives >= 0 && a.PriorTruePositives >= 0 {
		// In (-1, 1): positive when earlier verdicts on the fingerprint were
		// mostly false positives, shrunk towards 0 when they were few.
		x := float64(a.PriorFalsePositives-a.PriorTruePositives) / float64(n+2)
		fs = append(fs, feature{"fingerprint_false_positive_history", x})
	}
	return fs
}

// valueBucket buckets a value by sign and decimal order of magnitude.
func valueBucket(v float64) string {
	switch {
	case math.IsNaN(v):
		return ""
	case math.IsInf(v, 1):
		return "=+Inf"
	case math.IsInf(v, -1):
		return "=-Inf"
	case v == 0:
		return "=0"
	}
	sign := ""
	if v < 0 {
		sign = "-"
	}
	e := math.Floor(math.Log10(math.Abs(v)))
	e = math.Max(-6, math.Min(9, e))
	return fmt.Sprintf("≈%s1e%d", sign, int(e))
}

// scoreBucket buckets an anomaly score's magnitude.
func scoreBucket(s float64) string {
	s = math.Abs(s)
	switch {
	case math.IsNaN(s):
		return ""
	case s < 1:
		return "<1"
	case s < 2:
		return "=1-2"
	case s < 3:
		return "=2-3"
	case s < 5:
		return "=3-5"
	}
	return "≥5"
}

var durationBuckets = []struct {
	below time.Duration
	name  string
}{
	{time.Minute, "<1m"}, {5 * time.Minute, "<5m"}, {15 * time.Minute, "<15m"},
	{time.Hour, "<1h"}, {6 * time.Hour, "<6h"}, {24 * time.Hour, "<1d"},
}

func durationBucket(d time.Duration) string {
	for _, b := range durationBuckets {
		if d < b.below {
			return b.name
		}
	}
	return "≥1d"
}

func countBucket(n int) string {
	switch {
	case n == 1:
		return "=1"
	case n < 4:
		return "=2-3"
	case n < 8:
		return "=4-7"
	}
	return "≥8"
}
