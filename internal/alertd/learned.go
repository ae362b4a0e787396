package alertd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// learnedStage keeps alerts the classifier finds likely false positives
// from notifications: once its model is confident, an alert whose
// false-positive probability is above the threshold is suppressed, with the
// features that weighed in its history. It runs after the classify stage.
// A suppressed alert is never lost: one that still fires after max_hold is
// released, whatever the model says.
type learnedStage struct {
	mu  sync.Mutex
	cfg alertconfig.LearnedSuppression
}

func (l *learnedStage) set(c alertconfig.LearnedSuppression) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = c
}

// Name implements Stage.
func (l *learnedStage) Name() string { return "learned" }

// Process implements Stage.
func (l *learnedStage) Process(_ context.Context, now time.Time, a *Alert) Decision {
	l.mu.Lock()
	cfg := l.cfg
	l.mu.Unlock()
	d := a.classification
	if cfg.Threshold <= 0 || d == nil || a.ResolvedAt(now) || !d.Confident || d.FalsePositiveProbability <= cfg.Threshold {
		return Decision{}
	}
	if maxHold := time.Duration(cfg.MaxHold); now.Sub(a.StartsAt) >= maxHold {
		if a.lastDecision(l.Name()).Action != "suppressed" {
			return Decision{}
		}
		return Decision{Action: "released", Reason: fmt.Sprintf("likely false positive (p=%.2f), but still firing after %s (max_hold)",
			d.FalsePositiveProbability, model.Duration(maxHold))}
	}
	var why []string
	for _, c := range d.Explanation {
		if c.Weight > 0 {
			why = append(why, fmt.Sprintf("%s %+.2f", c.Feature, c.Weight))
		}
	}
	a.Suppressed = true
	return Decision{Action: "suppressed", Reason: fmt.Sprintf("likely false positive (p=%.2f): %s", d.FalsePositiveProbability, strings.Join(why, ", "))}
}
