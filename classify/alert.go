package classify

import "time"

// Alert is what the classifier sees of an alert. The caller (alertd) fills it
// from its own alert type, so this package depends on no alert model.
type Alert struct {
	// Labels are the alert's labels, alertname included.
	Labels map[string]string
	// Source says where the alert came from: rule, prometheus, alertmanager, …
	Source string
	// Value is the value that triggered the alert; NaN when unknown.
	Value float64
	// AnomalyScore is the anomaly stage's score; NaN when there is none.
	AnomalyScore float64
	// StartsAt is when the alert started firing; zero when unknown.
	StartsAt time.Time
	// FlapCount is how often the alert resolved and fired again recently.
	FlapCount int
	// RecentDeploy is set when the model or service was deployed recently.
	RecentDeploy bool
	// PriorFalsePositives and PriorTruePositives count the verdicts operators
	// gave earlier alerts with the same fingerprint.
	PriorFalsePositives, PriorTruePositives int
}

// firingFor is how long a has been firing at now; zero when unknown or in the
// future.
func (a Alert) firingFor(now time.Time) time.Duration {
	if a.StartsAt.IsZero() || now.Before(a.StartsAt) {
		return 0
	}
	return now.Sub(a.StartsAt)
}
