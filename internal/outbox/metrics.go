package outbox

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a delivery attempt, the values of the result label.
const (
	resultDelivered    = "delivered"
	resultRetried      = "retried"
	resultDeadLettered = "dead_lettered"
)

var results = []string{resultDelivered, resultRetried, resultDeadLettered}

// heldStates are the values of the state label of the duplicates: what
// became of the message held of their key, named as the results, and
// discarded (a dead letter an operator discarded).
var heldStates = []string{HeldPending, HeldDelivered, resultDeadLettered, HeldDiscarded}

// heldLabel is the state label of a duplicate whose key is held in state
// (Dropped.State).
func heldLabel(state string) string {
	if state == HeldDead {
		return resultDeadLettered
	}
	return state
}

// metrics are the outbox's metrics, by receiver and integration. Those
// that tell a stuck or failing lane apart — the attempts by result, the
// queue, its oldest message and the dead letters — are by entry too: each
// entry of an integration (a receiver's second webhook, say) is a lane of
// its own, and one webhook that is down must not hide behind another that
// works. The entries come from the configuration file, so the series stay
// bounded by it: 6 per entry (3 results and 3 gauges). The counts by
// failure reason, the enqueued messages (one per entry of a notification
// anyway), the duplicates, the discarded dead letters and the duration
// histogram sum the entries, for they would cost 6, 1, 4, 1 and 12 series
// per entry and say little more.
type metrics struct {
	enqueued   *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	failures   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	discarded  *prometheus.CounterVec
	gauges     *gauges
}

func newMetrics(o *Outbox) *metrics {
	labels := []string{"receiver", "integration"}
	return &metrics{
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_messages_enqueued_total",
			Help: "The total number of messages stored in the outbox for delivery (duplicates of a held, delivered or discarded key are not counted).",
		}, labels),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_duplicates_total",
			Help: "The total number of messages not stored because the outbox held their idempotency key already, by what became of the message held: pending, delivered (within the retention), dead_lettered or discarded (a dead letter discarded within the retention).",
		}, append(labels, "state")),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_deliveries_total",
			Help: "The total number of delivery attempts, by entry of the integration and result: delivered, retried (failed, tried again later) or dead_lettered.",
		}, []string{"receiver", "integration", "entry", "result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_delivery_failures_total",
			Help: "The total number of failed delivery attempts, by reason: timeout, connection, http_4xx, http_5xx, rate_limited, tls (a certificate the client does not trust, a failed TLS handshake) or other.",
		}, append(labels, "reason")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "alertd_outbox_delivery_duration_seconds",
			Help:                            "The duration of delivery attempts in seconds.",
			Buckets:                         []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, labels),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_outbox_dead_letters_discarded_total",
			Help: "The total number of dead letters discarded, never to be delivered.",
		}, labels),
		gauges: &gauges{o: o, known: map[laneKey]bool{}, retired: map[laneKey]bool{}},
	}
}

// InitializeFor pre-creates at 0 the metrics of a receiver's integration
// with that many entries, so that they exist before its first message.
func (o *Outbox) InitializeFor(receiver, integration string, entries int) {
	m := o.metrics
	m.enqueued.WithLabelValues(receiver, integration)
	for _, s := range heldStates {
		m.duplicates.WithLabelValues(receiver, integration, s)
	}
	m.duration.WithLabelValues(receiver, integration)
	m.discarded.WithLabelValues(receiver, integration)
	for _, r := range reasons {
		m.failures.WithLabelValues(receiver, integration, r)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for e := range entries {
		for _, r := range results {
			m.deliveries.WithLabelValues(receiver, integration, strconv.Itoa(e), r)
		}
		k := laneKey{receiver, integration, e}
		m.gauges.known[k] = true
		delete(m.gauges.retired, k)
	}
}

// Retain deletes the metrics of the lanes — entries of a receiver's
// integration — that keep rejects, as Prometheus wants the series of what
// is gone: those the configuration no longer has after a reload, or had
// no more at a restart. A lane that still holds pending messages keeps its
// series, and its queue gauges show them, until they are delivered or
// dead-lettered; its series are deleted then. The series by receiver and
// integration alone go with the last of their lanes. Dead letters keep
// their lane's alertd_outbox_dead_letters until they are redriven or
// discarded. Each
// caller decides for the integrations it sends (keep returns true for the
// others); InitializeFor brings a lane back.
func (o *Outbox) Retain(keep func(receiver, integration string, entry int) bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.metrics.gauges
	gone := map[laneKey]bool{}
	for k := range g.known {
		if !keep(k.receiver, k.integration, k.entry) {
			gone[k] = true
		}
	}
	for k := range o.lanes {
		if !keep(k.receiver, k.integration, k.entry) {
			gone[k] = true
		}
	}
	// A lane with dead letters only, of a receiver removed before a
	// restart, is in neither: retired, its series go with a Discard.
	for _, r := range o.dead {
		if k := laneKeyOf(&r.Message); !keep(k.receiver, k.integration, k.entry) {
			gone[k] = true
		}
	}
	for k := range gone {
		delete(g.known, k)
		g.retired[k] = true
	}
	for k := range gone {
		o.pruneLocked(k)
	}
}

// pruneLocked deletes the series of a retired lane unless it holds pending
// messages, and those by its receiver and integration unless another of
// their lanes is configured or holds messages. Called with o.mu held.
func (o *Outbox) pruneLocked(k laneKey) {
	if l := o.lanes[k]; l != nil {
		if len(l.queue) > 0 {
			return
		}
		// A worker that still holds l finds it empty and ends.
		delete(o.lanes, k)
	}
	m := o.metrics
	ri := prometheus.Labels{"receiver": k.receiver, "integration": k.integration}
	m.deliveries.DeletePartialMatch(prometheus.Labels{"receiver": k.receiver, "integration": k.integration, "entry": strconv.Itoa(k.entry)})
	same := func(x laneKey) bool { return x.receiver == k.receiver && x.integration == k.integration }
	for x := range m.gauges.known {
		if same(x) {
			return
		}
	}
	for x, l := range o.lanes {
		if same(x) && (len(l.queue) > 0 || !m.gauges.retired[x]) {
			return
		}
	}
	m.enqueued.DeletePartialMatch(ri)
	m.duplicates.DeletePartialMatch(ri)
	m.deliveries.DeletePartialMatch(ri)
	m.failures.DeletePartialMatch(ri)
	m.duration.DeletePartialMatch(ri)
	m.discarded.DeletePartialMatch(ri)
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	cols := []prometheus.Collector{m.enqueued, m.duplicates, m.deliveries, m.failures, m.duration, m.discarded, m.gauges}
	for i, c := range cols {
		if err := reg.Register(c); err != nil {
			for _, done := range cols[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("couldn't register outbox metrics: %w", err)
		}
	}
	return nil
}

var (
	laneLabels = []string{"receiver", "integration", "entry"}
	depthDesc  = prometheus.NewDesc("alertd_outbox_queue_depth",
		"The number of messages waiting in the outbox for delivery, by entry of the integration.", laneLabels, nil)
	ageDesc = prometheus.NewDesc("alertd_outbox_oldest_pending_age_seconds",
		"The age in seconds of the oldest message waiting for delivery, by entry of the integration; 0 when none waits.", laneLabels, nil)
	deadDesc = prometheus.NewDesc("alertd_outbox_dead_letters",
		"The number of dead letters, by entry of the integration: messages given up on, waiting to be redriven.", laneLabels, nil)
)

// gauges computes the queue gauges of each lane from the outbox at scrape
// time.
type gauges struct {
	o *Outbox
	// known are the configured lanes (InitializeFor), retired those
	// Retain rejected since: their series go once they drain. Both are
	// guarded by o.mu.
	known, retired map[laneKey]bool
}

// Describe implements prometheus.Collector.
func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- ageDesc
	ch <- deadDesc
}

// Collect implements prometheus.Collector. A configured lane, and one
// that holds or held messages, has the three gauges; one that is neither
// but holds dead letters (of a receiver removed since) has
// alertd_outbox_dead_letters only.
func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	o := g.o
	now := o.opts.Now()
	type stat struct {
		depth, dead int
		age         float64
		queue       bool // whether the queue gauges are exposed
	}
	o.mu.Lock()
	stats := map[laneKey]*stat{}
	for k := range g.known {
		stats[k] = &stat{queue: true}
	}
	get := func(k laneKey) *stat {
		if stats[k] == nil {
			stats[k] = &stat{}
		}
		return stats[k]
	}
	for k, l := range o.lanes {
		s := get(k)
		s.queue = true
		s.depth += len(l.queue)
		for _, r := range l.queue {
			s.age = max(s.age, now.Sub(r.Created).Seconds())
		}
	}
	for _, r := range o.dead {
		get(laneKeyOf(&r.Message)).dead++
	}
	o.mu.Unlock()
	for k, s := range stats {
		entry := strconv.Itoa(k.entry)
		if s.queue {
			ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(s.depth), k.receiver, k.integration, entry)
			ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, s.age, k.receiver, k.integration, entry)
		}
		ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(s.dead), k.receiver, k.integration, entry)
	}
}
