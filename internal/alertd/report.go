package alertd

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// report is the noise ledger's report over a time window: what paged, what
// was kept quiet and why, and how right both were by the operators'
// verdicts.
type report struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Pages are delivered notifications with firing alerts, one per
	// notification of an incident whatever the number of alerts, per UTC day.
	Pages struct {
		Total  int          `json:"total"`
		PerDay []reportDays `json:"per_day"`
	} `json:"pages"`
	// AlertsFired counts fired events: an alert starting to fire, again
	// after it resolved included.
	AlertsFired int `json:"alerts_fired"`
	// Suppressed counts alerts a stage kept from notifications, by stage;
	// each stage once per firing of an alert.
	Suppressed struct {
		Total    int            `json:"total"`
		ByReason map[string]int `json:"by_reason"`
	} `json:"suppressed"`
	// Precision is true_positive / (true_positive + false_positive +
	// not_actionable) over the alerts paged in the window, each by its
	// latest verdict in the window; null when none has one.
	Precision struct {
		Ratio         *float64 `json:"ratio"`
		PagedAlerts   int      `json:"paged_alerts"`
		TruePositive  int      `json:"true_positive"`
		FalsePositive int      `json:"false_positive"`
		NotActionable int      `json:"not_actionable"`
	} `json:"precision"`
	// SuppressedConfirmed are the alerts suppressed in the window that were
	// later paged or got a true_positive verdict: the cost of suppression.
	SuppressedConfirmed struct {
		Count        int      `json:"count"`
		Fingerprints []string `json:"fingerprints"`
	} `json:"suppressed_confirmed"`
	Flaps struct {
		// Suppressed counts suppressions by the flap stage.
		Suppressed int `json:"suppressed"`
		// StateChanges counts fired and resolved events.
		StateChanges int `json:"state_changes"`
	} `json:"flaps"`
	// Mean times, over the alerts that fired in the window, from firing
	// (startsAt) to the first acknowledgement and to resolution (endsAt);
	// null when none was.
	MeanTimeToAcknowledge *float64 `json:"mean_time_to_acknowledge_seconds"`
	Acknowledged          int      `json:"acknowledged"`
	MeanTimeToResolve     *float64 `json:"mean_time_to_resolve_seconds"`
	Resolved              int      `json:"resolved"`
	// Verdicts counts every verdict given in the window.
	Verdicts map[string]int `json:"verdicts"`
}

// reportDays is the number of pages of a UTC day.
type reportDays struct {
	Day   string `json:"day"`
	Pages int    `json:"pages"`
}

// computeReport computes the report of [from, to] from the ledger's events
// of that window, in the order they were recorded.
func computeReport(events []*Event, from, to time.Time) report {
	var r report
	r.From, r.To = from, to
	r.Suppressed.ByReason = map[string]int{}
	r.Verdicts = map[string]int{}
	for _, v := range verdicts {
		r.Verdicts[v] = 0
	}
	r.SuppressedConfirmed.Fingerprints = []string{}

	perDay := map[string]int{}
	pages := map[string]bool{}
	paged := map[string]bool{} // fingerprints paged in the window
	latestVerdict := map[string]string{}
	suppressedAt := map[string]bool{} // suppressed, not yet confirmed
	confirmed := map[string]bool{}
	// The firing of each alert being followed for the mean times.
	type firing struct {
		startsAt        time.Time
		acked, resolved bool
	}
	open := map[string]*firing{}
	var ttaSum, ttrSum float64

	for _, e := range events {
		switch e.Event {
		case eventFired:
			r.AlertsFired++
			r.Flaps.StateChanges++
			start := e.StartsAt
			if start.IsZero() {
				start = e.Time
			}
			open[e.Fingerprint] = &firing{startsAt: start}
		case eventResolved:
			r.Flaps.StateChanges++
			if f := open[e.Fingerprint]; f != nil && !f.resolved {
				f.resolved = true
				end := e.EndsAt
				if end.IsZero() {
					end = e.Time
				}
				ttrSum += max(0, end.Sub(f.startsAt).Seconds())
				r.Resolved++
			}
		case eventAcknowledged:
			if f := open[e.Fingerprint]; f != nil && !f.acked {
				f.acked = true
				ttaSum += max(0, e.Time.Sub(f.startsAt).Seconds())
				r.Acknowledged++
			}
		case eventSuppressed:
			r.Suppressed.Total++
			r.Suppressed.ByReason[e.Reason]++
			if e.Reason == "flap" {
				r.Flaps.Suppressed++
			}
			suppressedAt[e.Fingerprint] = true
		case eventPaged:
			if !pages[e.Page] {
				pages[e.Page] = true
				r.Pages.Total++
				perDay[e.Time.UTC().Format(time.DateOnly)]++
			}
			paged[e.Fingerprint] = true
			if suppressedAt[e.Fingerprint] {
				confirmed[e.Fingerprint] = true
			}
		case eventVerdict:
			if _, ok := r.Verdicts[e.Verdict]; ok {
				r.Verdicts[e.Verdict]++
			}
			latestVerdict[e.Fingerprint] = e.Verdict
			if e.Verdict == verdictTruePositive && suppressedAt[e.Fingerprint] {
				confirmed[e.Fingerprint] = true
			}
		}
	}

	for d := from.UTC().Truncate(24 * time.Hour); !d.After(to); d = d.Add(24 * time.Hour) {
		day := d.Format(time.DateOnly)
		r.Pages.PerDay = append(r.Pages.PerDay, reportDays{Day: day, Pages: perDay[day]})
	}
	if r.Pages.PerDay == nil {
		r.Pages.PerDay = []reportDays{}
	}

	r.Precision.PagedAlerts = len(paged)
	for fp := range paged {
		switch latestVerdict[fp] {
		case verdictTruePositive:
			r.Precision.TruePositive++
		case verdictFalsePositive:
			r.Precision.FalsePositive++
		case verdictNotActionable:
			r.Precision.NotActionable++
		}
	}
	if n := r.Precision.TruePositive + r.Precision.FalsePositive + r.Precision.NotActionable; n > 0 {
		p := float64(r.Precision.TruePositive) / float64(n)
		r.Precision.Ratio = &p
	}
	for fp := range confirmed {
		r.SuppressedConfirmed.Fingerprints = append(r.SuppressedConfirmed.Fingerprints, fp)
	}
	slices.Sort(r.SuppressedConfirmed.Fingerprints)
	r.SuppressedConfirmed.Count = len(confirmed)
	if r.Acknowledged > 0 {
		m := ttaSum / float64(r.Acknowledged)
		r.MeanTimeToAcknowledge = &m
	}
	if r.Resolved > 0 {
		m := ttrSum / float64(r.Resolved)
		r.MeanTimeToResolve = &m
	}
	return r
}

// report computes the report of [from, to] from the ledger.
func (l *ledger) report(from, to time.Time) (report, error) {
	var events []*Event
	if err := l.read(from, to, func(e *Event) { events = append(events, e) }); err != nil {
		return report{}, err
	}
	return computeReport(events, from, to), nil
}

// defaultReportWindow is the report's window when from is not given.
const defaultReportWindow = 7 * 24 * time.Hour

// reportWindow parses from and to (Unix seconds or RFC 3339), by default
// the last 7 days.
func reportWindow(r *http.Request, now time.Time) (time.Time, time.Time, *apiError) {
	to, err := parseTime(r.URL.Query().Get("to"), now)
	if err != nil {
		return time.Time{}, time.Time{}, badData(fmt.Errorf("invalid parameter \"to\": %w", err))
	}
	from, err := parseTime(r.URL.Query().Get("from"), to.Add(-defaultReportWindow))
	if err != nil {
		return time.Time{}, time.Time{}, badData(fmt.Errorf("invalid parameter \"from\": %w", err))
	}
	if from.After(to) {
		return time.Time{}, time.Time{}, badData(errors.New("invalid parameters: \"from\" must not be after \"to\""))
	}
	return from, to, nil
}

// getReport answers GET /api/v1/report?from=&to=.
func (a *Alertd) getReport(w http.ResponseWriter, r *http.Request) {
	from, to, aerr := reportWindow(r, a.opts.Now())
	if aerr != nil {
		respondError(w, aerr)
		return
	}
	// The per-day list never goes further back than the ledger keeps.
	if oldest := to.Add(-a.opts.LedgerRetention); from.Before(oldest) {
		from = oldest
	}
	rep, err := a.ledger.report(from, to)
	if err != nil {
		respondError(w, &apiError{typ: "internal", err: err, status: http.StatusInternalServerError})
		return
	}
	respond(w, rep)
}

// maxLedgerEvents bounds the events GET /api/v1/ledger returns.
const maxLedgerEvents = 10_000

// getLedger answers GET /api/v1/ledger?fingerprint=&event=&from=&to=: the
// ledger's events of the window (default the last 7 days), oldest first,
// at most maxLedgerEvents (the newest).
func (a *Alertd) getLedger(w http.ResponseWriter, r *http.Request) {
	from, to, aerr := reportWindow(r, a.opts.Now())
	if aerr != nil {
		respondError(w, aerr)
		return
	}
	q := r.URL.Query()
	fp := q.Get("fingerprint")
	if fp != "" {
		f, err := model.FingerprintFromString(fp)
		if err != nil {
			respondError(w, badData(fmt.Errorf("invalid parameter \"fingerprint\": %q: want 16 hex digits", fp)))
			return
		}
		fp = f.String()
	}
	typ := q.Get("event")
	if typ != "" && !slices.Contains(eventTypes, typ) {
		respondError(w, badData(fmt.Errorf("invalid parameter \"event\": %q: want one of %v", typ, eventTypes)))
		return
	}
	out := []*Event{}
	err := a.ledger.read(from, to, func(e *Event) {
		if (fp == "" || e.Fingerprint == fp) && (typ == "" || e.Event == typ) {
			out = append(out, e)
		}
	})
	if err != nil {
		respondError(w, &apiError{typ: "internal", err: err, status: http.StatusInternalServerError})
		return
	}
	var warnings []string
	if len(out) > maxLedgerEvents {
		warnings = append(warnings, "only the newest "+strconv.Itoa(maxLedgerEvents)+" of "+strconv.Itoa(len(out))+" events")
		out = out[len(out)-maxLedgerEvents:]
	}
	respond(w, map[string]any{"events": out}, warnings...)
}

// precisionWindow is the window of alertd_alert_precision_ratio.
const precisionWindow = 7 * 24 * time.Hour

var precisionDesc = prometheus.NewDesc("alertd_alert_precision_ratio",
	"The share of paged alerts with a verdict that operators confirmed as true positives over the last 7 days, from the ledger; recomputed every minute, absent while no paged alert has a verdict.",
	nil, nil)

// precisionCollector exposes the precision computed last.
type precisionCollector struct {
	mu    sync.Mutex
	ratio *float64
	at    time.Time
}

// Describe implements prometheus.Collector.
func (p *precisionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- precisionDesc }

// Collect implements prometheus.Collector.
func (p *precisionCollector) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ratio != nil {
		ch <- prometheus.MustNewConstMetric(precisionDesc, prometheus.GaugeValue, *p.ratio)
	}
}

// update recomputes the precision if it is older than a minute.
func (p *precisionCollector) update(l *ledger, now time.Time) error {
	p.mu.Lock()
	due := p.at.IsZero() || now.Sub(p.at) >= time.Minute
	p.mu.Unlock()
	if !due {
		return nil
	}
	rep, err := l.report(now.Add(-precisionWindow), now)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ratio, p.at = rep.Precision.Ratio, now
	return nil
}
