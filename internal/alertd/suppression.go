package alertd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
)

// Defaults of suppression rules.
const (
	defaultSuppressionDuration = 7 * 24 * time.Hour
	defaultPreviewLookback     = 30 * 24 * time.Hour
)

// volatileLabels are left out of proposed matchers: they name one
// replica of something, and a rule about them would not generalise.
var volatileLabels = []model.LabelName{"instance", "pod", "pod_name", "pod_ip", "container_id",
	"node", "host", "hostname", "replica", "anomaly_score"}

// valueCondition is a suppression rule's condition on the alert's value,
// such as "value < 0.3".
type valueCondition struct {
	op string
	x  float64
}

var conditionRe = regexp.MustCompile(`^\s*value\s*(<=|>=|<|>)\s*(\S+)\s*$`)

// parseCondition parses "value OP NUMBER" with OP one of <, <=, >, >=.
func parseCondition(s string) (*valueCondition, error) {
	if s == "" {
		return nil, nil
	}
	m := conditionRe.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("invalid condition %q: want \"value OP NUMBER\" with OP one of <, <=, >, >=", s)
	}
	x, err := strconv.ParseFloat(m[2], 64)
	if err != nil || math.IsNaN(x) {
		return nil, fmt.Errorf("invalid condition %q: %q is not a number", s, m[2])
	}
	return &valueCondition{op: m[1], x: x}, nil
}

// holds reports whether the value meets the condition; an unknown (NaN)
// value never does.
func (c *valueCondition) holds(v float64) bool {
	if c == nil {
		return true
	}
	if math.IsNaN(v) {
		return false
	}
	switch c.op {
	case "<":
		return v < c.x
	case "<=":
		return v <= c.x
	case ">":
		return v > c.x
	case ">=":
		return v >= c.x
	}
	return false
}

// suppressionRule keeps the alerts its matchers select, and whose value
// meets its condition, from notifications until it expires. Rules are
// proposed from operators' verdicts and applied through the API.
type suppressionRule struct {
	ID        string    `json:"id"`
	Matchers  []string  `json:"matchers"`
	Condition string    `json:"condition,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
	Comment   string    `json:"comment,omitempty"`

	matchers amlabels.Matchers
	cond     *valueCondition
}

// active says whether the rule applies at now.
func (r *suppressionRule) active(now time.Time) bool { return now.Before(r.ExpiresAt) }

// selects says whether the rule selects an alert by its labels and value.
func (r *suppressionRule) selects(ls model.LabelSet, v float64) bool {
	return r.matchers.Matches(ls) && r.cond.holds(v)
}

// defaultSuppressionRetention is how long an expired suppression rule is
// kept after it ends: as long as a silence (defaultSilenceRetention).
const defaultSuppressionRetention = defaultSilenceRetention

// suppressions is the "rule" stage of the pipeline and the store of
// suppression rules, kept in a file under --storage.path and forgotten
// --suppressions.retention after they expire (gc), counted from their
// expiresAt as silences' retention is from their end.
type suppressions struct {
	*itemSet[suppressionRule, *suppressionRule]
}

func newSuppressions(path string) (*suppressions, error) {
	set, err := openItemSet[suppressionRule]("suppression rule", path)
	if err != nil {
		return nil, err
	}
	return &suppressions{set}, nil
}

func (r *suppressionRule) itemID() string            { return r.ID }
func (r *suppressionRule) fromConfig() bool          { return false }
func (r *suppressionRule) endsAt() (time.Time, bool) { return r.ExpiresAt, true }

func (r *suppressionRule) expire(now time.Time) {
	if r.active(now) {
		r.ExpiresAt = now
	}
}

func (r *suppressionRule) compile() (err error) {
	if r.matchers, err = parseSilenceMatchers(r.Matchers); err != nil {
		return err
	}
	r.cond, err = parseCondition(r.Condition)
	return err
}

// Name implements Stage.
func (s *suppressions) Name() string { return "rule" }

// Process implements Stage: an alert an active rule selects is
// suppressed; with several, the one expiring last is named.
func (s *suppressions) Process(_ context.Context, now time.Time, a *Alert) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	var by *suppressionRule
	for _, r := range s.items {
		if !r.active(now) || !r.selects(a.Labels, a.Value) {
			continue
		}
		if by == nil || r.ExpiresAt.After(by.ExpiresAt) || (r.ExpiresAt.Equal(by.ExpiresAt) && r.ID < by.ID) {
			by = r
		}
	}
	if by == nil {
		return Decision{}
	}
	a.Suppressed = true
	reason := fmt.Sprintf("suppressed by rule %s until %s", by.ID, by.ExpiresAt.UTC().Format(time.RFC3339))
	if by.cond != nil {
		reason += fmt.Sprintf(" (value %s %s %s)", formatValue(a.Value), by.cond.op, formatValue(by.cond.x))
	}
	if by.CreatedBy != "" {
		reason += ", created by " + by.CreatedBy
	}
	if by.Comment != "" {
		reason += ": " + by.Comment
	}
	return Decision{Action: "suppressed", Reason: reason}
}

// suppressionsPath is where suppression rules are kept.
func suppressionsPath(storage string) string { return filepath.Join(storage, "suppressions.json") }

// suppressionRequest is the body of POST /api/v1/suppressions and
// /api/v1/suppressions/preview, and the proposal in a feedback answer.
type suppressionRequest struct {
	Matchers  []string  `json:"matchers"`
	Condition string    `json:"condition,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	Duration  string    `json:"duration,omitempty"`
	CreatedBy string    `json:"createdBy,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	// Lookback is how far back a preview looks (default 30d); ignored
	// when applying.
	Lookback string `json:"lookback,omitempty"`
}

// parseSuppression decodes and checks a suppression rule; the error is
// the client's.
func parseSuppression(r *http.Request, now time.Time) (*suppressionRule, suppressionRequest, error) {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var req suppressionRequest
	if err := dec.Decode(&req); err != nil {
		return nil, req, fmt.Errorf("couldn't parse suppression rule: %w", err)
	}
	ms, err := parseSilenceMatchers(req.Matchers)
	if err != nil {
		return nil, req, err
	}
	cond, err := parseCondition(req.Condition)
	if err != nil {
		return nil, req, err
	}
	rule := &suppressionRule{Matchers: req.Matchers, Condition: req.Condition, CreatedAt: now,
		CreatedBy: req.CreatedBy, Comment: req.Comment, matchers: ms, cond: cond}
	switch {
	case req.Duration != "" && !req.ExpiresAt.IsZero():
		return nil, req, errors.New("give expiresAt or duration, not both")
	case !req.ExpiresAt.IsZero():
		rule.ExpiresAt = req.ExpiresAt
	case req.Duration != "":
		d, err := model.ParseDuration(req.Duration)
		if err != nil {
			return nil, req, fmt.Errorf("invalid duration %q: %v", req.Duration, err)
		}
		rule.ExpiresAt = now.Add(time.Duration(d))
	default:
		rule.ExpiresAt = now.Add(defaultSuppressionDuration)
	}
	if !rule.ExpiresAt.After(now) {
		return nil, req, errors.New("expiresAt must be in the future")
	}
	return rule, req, nil
}

// postSuppression applies a suppression rule: from now on, the "rule"
// stage keeps the alerts it selects from notifications, those firing now
// included.
func (a *Alertd) postSuppression(w http.ResponseWriter, r *http.Request) {
	now := a.opts.Now()
	rule, _, err := parseSuppression(r, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	rule.ID = hex.EncodeToString(id)
	if err := a.suppressions.add(rule); err != nil {
		a.logger.Error("Failed to save suppression rules", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := a.store.resuppress(r.Context(), now); err != nil {
		a.logger.Error("Failed to apply the new suppression rule", "err", err)
	}
	respond(w, map[string]any{"suppressionID": rule.ID, "rule": rule})
}

// getSuppressions lists suppression rules with their state.
func (a *Alertd) getSuppressions(w http.ResponseWriter, _ *http.Request) {
	now := a.opts.Now()
	type ruleJSON struct {
		suppressionRule
		State string `json:"state"`
	}
	out := []ruleJSON{}
	for _, r := range a.suppressions.list(byEnd) {
		st := "expired"
		if r.active(now) {
			st = "active"
		}
		out = append(out, ruleJSON{r, st})
	}
	respond(w, out)
}

// deleteSuppression expires a suppression rule now; the alerts it held
// that still fire are released.
func (a *Alertd) deleteSuppression(w http.ResponseWriter, r *http.Request) {
	a.deleteItem(w, r, "suppression rule", "suppressionID", a.suppressions.expire)
}

// previewAlert is a past alert a rule would have suppressed.
type previewAlert struct {
	Fingerprint string         `json:"fingerprint"`
	Labels      model.LabelSet `json:"labels"`
	FiredAt     time.Time      `json:"firedAt"`
	Value       *float64       `json:"value,omitempty"`
	Paged       bool           `json:"paged"`
	Verdict     string         `json:"verdict,omitempty"`
}

// preview is what a rule would have done over the lookback.
type preview struct {
	Rule     *suppressionRule `json:"rule"`
	From     time.Time        `json:"from"`
	To       time.Time        `json:"to"`
	Alerts   []previewAlert   `json:"alerts"`
	Total    int              `json:"total"`
	Paged    int              `json:"paged"`
	Verdicts map[string]int   `json:"verdicts"`
	// ConfirmedTruePositives is the cost: alerts it would have kept quiet
	// that operators confirmed as real.
	ConfirmedTruePositives int `json:"confirmed_true_positives"`
}

// previewRule returns the alerts that fired in [from, to] that the rule
// would have suppressed: each firing of a selected alert whose value met
// the condition, with whether it was paged and its latest verdict after
// it fired.
func previewRule(events []*Event, rule *suppressionRule, from, to time.Time) preview {
	p := preview{Rule: rule, From: from, To: to, Alerts: []previewAlert{}, Verdicts: map[string]int{}}
	for _, v := range verdicts {
		p.Verdicts[v] = 0
	}
	current := map[string]int{} // fingerprint → index in p.Alerts of its latest firing
	for _, e := range events {
		switch e.Event {
		case eventFired:
			if !rule.selects(e.Labels, e.value()) {
				delete(current, e.Fingerprint)
				continue
			}
			p.Alerts = append(p.Alerts, previewAlert{Fingerprint: e.Fingerprint, Labels: e.Labels, FiredAt: e.StartsAt, Value: e.Value})
			if e.StartsAt.IsZero() {
				p.Alerts[len(p.Alerts)-1].FiredAt = e.Time
			}
			current[e.Fingerprint] = len(p.Alerts) - 1
		case eventPaged:
			if i, ok := current[e.Fingerprint]; ok {
				p.Alerts[i].Paged = true
			}
		case eventVerdict:
			if i, ok := current[e.Fingerprint]; ok {
				p.Alerts[i].Verdict = e.Verdict
			}
		}
	}
	p.Total = len(p.Alerts)
	for _, al := range p.Alerts {
		if al.Paged {
			p.Paged++
		}
		if al.Verdict != "" {
			p.Verdicts[al.Verdict]++
		}
		if al.Verdict == verdictTruePositive {
			p.ConfirmedTruePositives++
		}
	}
	return p
}

// postSuppressionPreview answers which past alerts of the lookback a rule
// would have suppressed, and how many of them were confirmed real.
func (a *Alertd) postSuppressionPreview(w http.ResponseWriter, r *http.Request) {
	now := a.opts.Now()
	rule, req, err := parseSuppression(r, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	lookback := defaultPreviewLookback
	if req.Lookback != "" {
		d, err := model.ParseDuration(req.Lookback)
		if err != nil || d <= 0 {
			http.Error(w, fmt.Sprintf("invalid lookback %q: want a positive duration such as 30d", req.Lookback), http.StatusBadRequest)
			return
		}
		lookback = time.Duration(d)
	}
	from := now.Add(-lookback)
	var events []*Event
	if err := a.ledger.read(from, now, func(e *Event) { events = append(events, e) }); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	respond(w, previewRule(events, rule, from, now))
}

// proposal proposes a suppression rule for alerts like a, after a
// false_positive or not_actionable verdict on it: its alertname and
// identifying labels (volatile ones left out), a condition on the value
// just above the largest value of the pattern's false-positive and
// not-actionable verdicts in the ledger when values are known, and the
// default expiry.
func (a *Alertd) proposal(al *Alert, now time.Time) suppressionRequest {
	names := make([]string, 0, len(al.Labels))
	for n := range al.Labels {
		if n != model.AlertNameLabel && !slices.Contains(volatileLabels, n) {
			names = append(names, string(n))
		}
	}
	slices.Sort(names)
	var ms amlabels.Matchers
	if v, ok := al.Labels[model.AlertNameLabel]; ok {
		ms = append(ms, mustEqual(model.AlertNameLabel, v))
	}
	for _, n := range names {
		ms = append(ms, mustEqual(model.LabelName(n), al.Labels[model.LabelName(n)]))
	}
	p := suppressionRequest{Duration: model.Duration(defaultSuppressionDuration).String(),
		Comment: fmt.Sprintf("proposed from operators' verdicts on %s", al.Labels[model.AlertNameLabel])}
	for _, m := range ms {
		p.Matchers = append(p.Matchers, m.String())
	}
	if len(ms) == 0 {
		return p
	}
	highest := al.Value
	_ = a.ledger.read(now.Add(-a.opts.LedgerRetention), now, func(e *Event) {
		if e.Event != eventVerdict || (e.Verdict != verdictFalsePositive && e.Verdict != verdictNotActionable) ||
			e.Value == nil || !ms.Matches(e.Labels) {
			return
		}
		if math.IsNaN(highest) || *e.Value > highest {
			highest = *e.Value
		}
	})
	if !math.IsNaN(highest) && !math.IsInf(highest, 0) {
		p.Condition = "value < " + strconv.FormatFloat(justAbove(highest), 'g', -1, 64)
	}
	return p
}

func mustEqual(n model.LabelName, v model.LabelValue) *amlabels.Matcher {
	m, err := amlabels.NewMatcher(amlabels.MatchEqual, string(n), string(v))
	if err != nil {
		panic(err) // only for a regular expression matcher
	}
	return m
}

// justAbove returns the smallest number with two significant digits above
// v: 0.27 → 0.28, 0.2 → 0.21, 123 → 130, 0 → 0.01.
func justAbove(v float64) float64 {
	if v == 0 {
		return 0.01
	}
	step := math.Pow(10, math.Floor(math.Log10(math.Abs(v)))-1)
	n := math.Floor(v / step)
	if q := math.Round(v / step); math.Abs(v/step-q) < 1e-9 {
		n = q // v is a multiple of the step, up to binary noise
	}
	x := (n + 1) * step
	// Round away the binary noise of the step.
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 12, 64), 64)
	if r <= v {
		r = x
	}
	return r
}
