package alertd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/classify"
)

// Annotations the classify stage sets on every alert, so notifications
// carry them.
const (
	annotationCategory = "category"
	annotationPriority = "priority"
	annotationAction   = "action"
	annotationFP       = "false_positive_probability"
)

// Verdicts operators give in feedback.
const (
	verdictTruePositive  = "true_positive"
	verdictFalsePositive = "false_positive"
	verdictNotActionable = "not_actionable"
)

var verdicts = []string{verdictTruePositive, verdictFalsePositive, verdictNotActionable}

// classifier is the classify stage: it gives each alert a category,
// priority and action (configured rules first, then defaults) and the
// learned probability that it is a false positive, and learns from
// operators' verdicts. The model and the verdict counts per fingerprint are
// kept in a file under --storage.path, so a restart keeps what was learnt.
type classifier struct {
	mu       sync.Mutex
	c        *classify.Classifier
	file     *stateFile
	counts   map[model.Fingerprint]*verdictCount
	feedback *prometheus.CounterVec
	// flaps, when set, counts an alert's recent state changes.
	flaps func(model.Fingerprint) int
}

type verdictCount struct {
	TruePositives  int `json:"true_positives"`
	FalsePositives int `json:"false_positives"`
}

// classifierState is what the state file holds.
type classifierState struct {
	Model        *classify.Model                     `json:"model"`
	Fingerprints map[model.Fingerprint]*verdictCount `json:"fingerprints"`
}

func newClassifier(rules []classify.Rule, path string, reg prometheus.Registerer) (*classifier, error) {
	st := classifierState{Fingerprints: map[model.Fingerprint]*verdictCount{}}
	if _, err := readJSON(path, &st); err != nil {
		return nil, fmt.Errorf("couldn't read the classifier's state: %w", err)
	}
	c, err := classify.New(rules, classify.Options{Model: st.Model})
	if err != nil {
		return nil, fmt.Errorf("classification: %w", err)
	}
	if st.Fingerprints == nil {
		st.Fingerprints = map[model.Fingerprint]*verdictCount{}
	}
	cl := &classifier{c: c, file: newStateFile(path), counts: st.Fingerprints,
		feedback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_feedback_total",
			Help: "The total number of verdicts operators gave on alerts, by verdict.",
		}, []string{"verdict"}),
	}
	for _, v := range verdicts {
		cl.feedback.WithLabelValues(v)
	}
	reg.MustRegister(cl.feedback)
	return cl, nil
}

// setRules swaps in new rules, keeping the learnt model.
func (cl *classifier) setRules(rules []classify.Rule) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	c, err := classify.New(rules, classify.Options{Model: cl.c.Model()})
	if err != nil {
		return fmt.Errorf("classification: %w", err)
	}
	cl.c = c
	return nil
}

// input is what the classifier sees of an alert. Called with cl.mu held.
func (cl *classifier) input(a *Alert) classify.Alert {
	in := classify.Alert{
		Labels: make(map[string]string, len(a.Labels)), Source: string(a.Source),
		Value: a.Value, AnomalyScore: math.NaN(), StartsAt: a.StartsAt,
	}
	for k, v := range a.Labels {
		in.Labels[string(k)] = string(v)
	}
	if s, err := strconv.ParseFloat(string(a.Labels["anomaly_score"]), 64); err == nil {
		in.AnomalyScore = s
	}
	if cl.flaps != nil {
		in.FlapCount = cl.flaps(a.Fingerprint)
	}
	if n := cl.counts[a.Fingerprint]; n != nil {
		in.PriorTruePositives, in.PriorFalsePositives = n.TruePositives, n.FalsePositives
	}
	return in
}

// Name implements Stage.
func (cl *classifier) Name() string { return "classify" }

// Process implements Stage: it sets the category, priority, action and
// false-positive probability annotations and records the decision.
func (cl *classifier) Process(_ context.Context, now time.Time, a *Alert) Decision {
	cl.mu.Lock()
	d := cl.c.Classify(cl.input(a), now)
	cl.mu.Unlock()
	ann := maps.Clone(a.Annotations)
	if ann == nil {
		ann = model.LabelSet{}
	}
	ann[annotationCategory] = model.LabelValue(d.Category)
	ann[annotationPriority] = model.LabelValue(d.Priority)
	ann[annotationAction] = model.LabelValue(d.Action)
	ann[annotationFP] = model.LabelValue(strconv.FormatFloat(d.FalsePositiveProbability, 'f', 3, 64))
	a.Annotations = ann
	a.classification = &d
	return Decision{Action: "classified", Reason: d.String()}
}

// observe learns from a verdict on the alert and saves the state.
func (cl *classifier) observe(a *Alert, now time.Time, verdict string) error {
	cl.mu.Lock()
	fp := verdict != verdictTruePositive
	cl.c.Observe(cl.input(a), now, fp)
	n := cl.counts[a.Fingerprint]
	if n == nil {
		n = &verdictCount{}
		cl.counts[a.Fingerprint] = n
	}
	if fp {
		n.FalsePositives++
	} else {
		n.TruePositives++
	}
	cl.feedback.WithLabelValues(verdict).Inc()
	cl.mu.Unlock()
	return cl.save()
}

// save writes the state file outside cl.mu, which the stage takes for
// every alert (see stateFile). Called without cl.mu held.
func (cl *classifier) save() error {
	if err := cl.file.save(&cl.mu, func() any {
		return classifierState{Model: cl.c.Model(), Fingerprints: cl.counts}
	}); err != nil {
		return fmt.Errorf("couldn't save the classifier's state: %w", err)
	}
	return nil
}

// feedbackRequest is the body of POST /api/v1/alerts/{fingerprint}/feedback.
type feedbackRequest struct {
	Verdict string `json:"verdict"`
	By      string `json:"by"`
	Note    string `json:"note"`
}

// postFeedback records an operator's verdict on an alert in its history and
// teaches the classifier with it.
func (a *Alertd) postFeedback(w http.ResponseWriter, r *http.Request) {
	fp, err := model.FingerprintFromString(r.PathValue("fingerprint"))
	if err != nil {
		http.Error(w, fmt.Sprintf("invalid fingerprint %q: want 16 hex digits", r.PathValue("fingerprint")), http.StatusBadRequest)
		return
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var req feedbackRequest
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("couldn't parse feedback: %v", err), http.StatusBadRequest)
		return
	}
	switch req.Verdict {
	case verdictTruePositive, verdictFalsePositive, verdictNotActionable:
	default:
		http.Error(w, fmt.Sprintf("invalid verdict %q: want one of %v", req.Verdict, verdicts), http.StatusBadRequest)
		return
	}
	now := a.opts.Now()
	al, err := a.feedback(now, fp, req.Verdict, req.By, req.Note)
	switch {
	case errors.Is(err, errUnknownAlert):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp := map[string]any{"fingerprint": fp.String(), "verdict": req.Verdict}
	if req.Verdict != verdictTruePositive {
		// A rule to keep alerts like it quiet, to preview and apply
		// through /api/v1/suppressions.
		resp["proposal"] = a.proposal(al, now)
	}
	respond(w, resp)
}

// feedback records an operator's verdict on the alert fp in its history
// and the ledger, and teaches the classifier with it. The API and Slack's
// false-positive button call it.
func (a *Alertd) feedback(now time.Time, fp model.Fingerprint, verdict, by, note string) (*Alert, error) {
	al, ok := a.store.get(fp)
	if !ok {
		return nil, fmt.Errorf("%w %s", errUnknownAlert, fp)
	}
	reason := verdict
	if by != "" {
		reason += " by " + by
	}
	if note != "" {
		reason += ": " + note
	}
	a.store.note([]model.Fingerprint{fp}, Decision{Time: now, Stage: "feedback", Action: verdict, Reason: reason})
	a.ledger.verdict(now, al, verdict, by, note)
	a.ledger.commit()
	if err := a.classifier.observe(al, now, verdict); err != nil {
		a.logger.Error("Failed to save the classifier's state", "err", err)
		return al, err
	}
	return al, nil
}

// classifierPath is where the classifier keeps its state.
func classifierPath(storage string) string { return filepath.Join(storage, "classifier.json") }
