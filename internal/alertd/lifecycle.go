package alertd

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelmon/modelmon/internal/lifecycle"
)

// doraWindow is the window of the deployment frequency and the change
// failure ratio; doraIncidentWindow how long after a deploy an incident of
// its model counts against it (see package lifecycle).
const (
	doraWindow         = 30 * 24 * time.Hour
	doraIncidentWindow = 24 * time.Hour
)

var (
	leadTimeBuckets = []float64{300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 604800, 1209600, 2592000}
	restoreBuckets  = []float64{60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800}

	doraLabels          = []string{"model", "environment"}
	deployFrequencyDesc = prometheus.NewDesc("alertd_deployment_frequency_per_day",
		"The number of successful deployments per day over the last 30 days, from the deploy events posted to /api/v1/deployments and seen in modelmon_model_info.",
		doraLabels, nil)
	changeFailureDesc = prometheus.NewDesc("alertd_change_failure_ratio",
		"The share of the deployments of the last 30 days that failed, were rolled back, or were followed within 24h, before the next deployment, by an incident of the model.",
		doraLabels, nil)
	leadTimeDesc = prometheus.NewDesc("alertd_deployment_lead_time_seconds",
		"The time from commit to successful deployment, over every deployment posted with a commit_time.",
		doraLabels, nil)
	restoreDesc = prometheus.NewDesc("alertd_time_to_restore_seconds",
		"The time from a failed or rolled-back deployment to the next successful deployment or rollback of the model and environment.",
		doraLabels, nil)
)

// lifecycleCollector exposes the delivery metrics of the models' lifecycle
// (DORA's four keys), computed at scrape time from the deploy log and the
// incidents in the ledger.
type lifecycleCollector struct {
	deployments *deployments
	ledger      *ledger
	now         func() time.Time

	// The incidents read from the ledger are cached for a minute.
	mu        sync.Mutex
	readAt    time.Time
	incidents []lifecycle.Incident
}

// Describe implements prometheus.Collector.
func (c *lifecycleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- deployFrequencyDesc
	ch <- changeFailureDesc
	ch <- leadTimeDesc
	ch <- restoreDesc
}

// Collect implements prometheus.Collector.
func (c *lifecycleCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	var deps []lifecycle.Deployment
	for _, ev := range c.deployments.list("") {
		d := lifecycle.Deployment{Model: ev.Model, Environment: ev.Environment, Version: ev.Version, Time: ev.Time, Outcome: ev.Outcome, Kind: ev.Kind}
		if ev.CommitTime != nil {
			d.CommitTime = *ev.CommitTime
		}
		deps = append(deps, d)
	}
	stats := lifecycle.Compute(deps, c.incidentsAt(now), now, lifecycle.Options{Window: doraWindow, IncidentWindow: doraIncidentWindow})
	for k, s := range stats {
		ch <- prometheus.MustNewConstMetric(deployFrequencyDesc, prometheus.GaugeValue, s.FrequencyPerDay, k.Model, k.Environment)
		if !math.IsNaN(s.ChangeFailureRatio) {
			ch <- prometheus.MustNewConstMetric(changeFailureDesc, prometheus.GaugeValue, s.ChangeFailureRatio, k.Model, k.Environment)
		}
		ch <- constHistogram(leadTimeDesc, leadTimeBuckets, s.LeadTimes, k)
		ch <- constHistogram(restoreDesc, restoreBuckets, s.RestoreTimes, k)
	}
}

// constHistogram is a histogram of durations in seconds.
func constHistogram(desc *prometheus.Desc, buckets []float64, ds []time.Duration, k lifecycle.Key) prometheus.Metric {
	counts := make(map[float64]uint64, len(buckets))
	for _, b := range buckets {
		counts[b] = 0
	}
	sum := 0.0
	for _, d := range ds {
		s := d.Seconds()
		sum += s
		for _, b := range buckets {
			if s <= b {
				counts[b]++
			}
		}
	}
	return prometheus.MustNewConstHistogram(desc, uint64(len(ds)), sum, counts, k.Model, k.Environment)
}

// incidentsAt returns the incidents opened in the window, as the ledger
// holds them: the first alert grouped into each, with its model and
// environment labels.
func (c *lifecycleCollector) incidentsAt(now time.Time) []lifecycle.Incident {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ledger == nil || (!c.readAt.IsZero() && now.Sub(c.readAt) < time.Minute && !now.Before(c.readAt)) {
		return c.incidents
	}
	seen := map[string]bool{}
	var out []lifecycle.Incident
	err := c.ledger.read(now.Add(-doraWindow-doraIncidentWindow), now, func(e *Event) {
		// An incident's id derives from its key and the time it
		// opened: only the event that opened it counts.
		if e.Event != eventGrouped || seen[e.Incident] || e.Incident != incidentID(incidentKey(e.GroupKey, e.Route, e.GroupLabels), e.Time) {
			return
		}
		seen[e.Incident] = true
		if m := string(e.Labels["model"]); m != "" {
			out = append(out, lifecycle.Incident{Model: m, Environment: string(e.Labels["environment"]), Time: e.Time})
		}
	})
	if err != nil {
		return c.incidents
	}
	c.readAt, c.incidents = now, out
	return out
}
