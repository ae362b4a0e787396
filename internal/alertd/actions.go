package alertd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	act "github.com/modelmon/modelmon/internal/actions"
	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/notify/notice"
	"github.com/modelmon/modelmon/internal/outbox"
)

// integrationAction is the outbox integration that delivers actions.
const integrationAction = "action"

// What triggered an action, the values of the trigger label of
// alertd_actions_triggered_total.
const (
	triggerAlert      = "alert"
	triggerEscalation = "escalation"
	triggerSchedule   = "schedule"
	triggerRollback   = "rollback"
)

var actionTriggers = []string{triggerAlert, triggerEscalation, triggerSchedule, triggerRollback}

// The states of an action request.
const (
	// stateAwaitingApproval: the action needs an operator's approval.
	stateAwaitingApproval = "awaiting_approval"
	// stateRefused: a guardrail (cooldown, budget) refused it.
	stateRefused = "refused"
	// stateRejected: an operator rejected it; stateExpired: nobody
	// decided within the approval timeout.
	stateRejected = "rejected"
	stateExpired  = "expired"
	// stateSent: handed to the outbox; stateDelivered: the receiver
	// accepted it; stateFailed: the outbox gave up on it.
	stateSent      = "sent"
	stateDelivered = "delivered"
	stateFailed    = "failed"
	// stateUnknown: the request was sent in full to a receiver without
	// idempotency (act.Idempotent) and no answer came before the
	// timeout: it may have started a run, so it is not retried; an
	// operator checks the CI and redrives its dead letter, or discards
	// it.
	stateUnknown = "unknown"
)

// outcomeUnknownError is the error of an attempt whose request was
// written in full to a receiver without idempotency and got no answer (a
// timeout, a connection closed, alertd stopping): sending it again may
// start a second run.
type outcomeUnknownError struct{ err error }

// outcomeUnknownPrefix starts the error of an outcomeUnknownError, as the
// outbox keeps it in the dead letter (adopt tells it by that).
const outcomeUnknownPrefix = "outcome unknown, not retried: "

func (e *outcomeUnknownError) Error() string {
	return outcomeUnknownPrefix + "the request was sent and no answer came, the CI may have started it: " + e.err.Error()
}
func (e *outcomeUnknownError) Unwrap() error { return e.err }

// Verification states of a request.
const (
	verifyPending  = "pending"
	verifyResolved = act.VerifyResolved
	verifyFailed   = act.VerifyFailed
)

// errActionRefused is wrapped by runAction's error when a guardrail or an
// operator refused the action.
var errActionRefused = errors.New("action refused")

// errNoAction is returned for an action name that is not configured.
var errNoAction = errors.New("no such action")

// actionRequest is one trigger of an action and what became of it: the
// answer to "did the retrain run, and why (not)?".
type actionRequest struct {
	ID      string `json:"id"`
	Action  string `json:"action"`
	Trigger string `json:"trigger"`
	// Key is the idempotency key: the outbox message's, and the
	// Idempotency-Key header of the request.
	Key    string            `json:"key"`
	Model  string            `json:"model,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Alerts are the fingerprints of the alerts that triggered it.
	Alerts    []string  `json:"alerts,omitempty"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// DecidedBy approved or rejected it.
	DecidedBy   string     `json:"decidedBy,omitempty"`
	SentAt      *time.Time `json:"sentAt,omitempty"`
	DeliveredAt *time.Time `json:"deliveredAt,omitempty"`
	Attempts    int        `json:"attempts,omitempty"`
	LastError   string     `json:"lastError,omitempty"`
	// Verification is pending, resolved or failed; VerifyBy is when the
	// alerts must have resolved; FollowUp what was done on failure.
	Verification string     `json:"verification,omitempty"`
	VerifyBy     *time.Time `json:"verifyBy,omitempty"`
	OnFailure    string     `json:"onFailure,omitempty"`
	FollowUp     string     `json:"followUp,omitempty"`
}

func (r *actionRequest) clone() *actionRequest {
	c := *r
	c.Labels, c.Alerts = maps.Clone(r.Labels), slices.Clone(r.Alerts)
	return &c
}

// fingerprints returns the request's alerts as fingerprints.
func (r *actionRequest) fingerprints() []model.Fingerprint {
	out := make([]model.Fingerprint, 0, len(r.Alerts))
	for _, s := range r.Alerts {
		if fp, err := model.FingerprintFromString(s); err == nil {
			out = append(out, fp)
		}
	}
	return out
}

// attemptTime is when the request counts against the guardrails, and
// whether it does: sent, or awaiting approval.
func (r *actionRequest) attemptTime() (time.Time, bool) {
	switch r.State {
	case stateSent, stateDelivered, stateFailed, stateUnknown:
		if r.SentAt == nil {
			return time.Time{}, false
		}
		return *r.SentAt, true
	case stateAwaitingApproval:
		return r.CreatedAt, true
	}
	return time.Time{}, false
}

// actionState is what actions.json under --storage.path holds, so that a
// restart keeps the guardrails' history, pending approvals and
// verifications.
type actionState struct {
	Requests []*actionRequest `json:"requests"`
	// Slots are the last schedule slot of each action.
	Slots map[string]time.Time `json:"slots"`
	// Schedules are the schedules (every/offset) the slots are of: a
	// slot of another schedule is no slot of this one. Files written
	// before alertd kept them have none.
	Schedules map[string]string `json:"schedules,omitempty"`
	// Rollbacks are the rollbacks the outbox refused, retried until it
	// takes them (or they are given up), by the request that failed
	// verification, which stays pending meanwhile.
	Rollbacks []savedRollback `json:"rollbacks,omitempty"`
}

// savedRollback is a rollback's retry as actions.json keeps it.
type savedRollback struct {
	// Request failed verification; Action is its rollback, Key the
	// rollback's idempotency key, Why the verification's failure.
	Request  string    `json:"request"`
	Action   string    `json:"action"`
	Key      string    `json:"key"`
	Why      string    `json:"why"`
	Attempts int       `json:"attempts"`
	Since    time.Time `json:"since"`
	Err      string    `json:"err,omitempty"`
}

// actionRetention is how long settled requests are kept.
const actionRetention = 8 * 24 * time.Hour

// actionRunner holds the configured actions and their requests; it is the
// outbox's Sender of the integration "action". Lock order: the store's
// lock may be held when its lock is taken, never the reverse.
type actionRunner struct {
	mu       sync.Mutex
	file     *stateFile
	cfgs     map[string]*alertconfig.Action
	names    []string
	requests []*actionRequest
	byKey    map[string]*actionRequest
	byID     map[string]*actionRequest
	slots    map[string]time.Time
	sched    map[string]string // the schedule of each slot
	// enqueue puts messages into the outbox (Outbox.Add, a bbolt commit
	// flushed to the disk), and returns those it dropped, whose key it
	// held already; called without mu held (send). Tests make it block
	// or fail.
	enqueue func(...*outbox.Message) ([]outbox.Dropped, error)
	// held tells what the outbox holds of a key (Outbox.Held, a read of
	// the bbolt file, no write); trigger asks it before the guardrails.
	// Nil looks nothing up.
	held func(key string) (outbox.Dropped, bool, error)
	// unsent are the requests decided sent whose message is not in the
	// outbox yet, by id: the state file keeps them as they were before
	// the decision (snapshot).
	unsent map[string]*sending
	// deferred are the sends decided by triggers made with the store's
	// lock held (onAlertFires), which the store's commit makes.
	deferred []*sending
	// retries are the alert triggers whose message the outbox refused,
	// by key, and schedRetries the schedules whose run it refused, by
	// action: both are tried again on the loop's passes (see retry).
	retries      retrySet
	schedRetries retrySet
	// rollbacks are the rollbacks the outbox refused, by the request
	// whose failed verification runs them: kept in the state file, as
	// the request's verification stays pending until its rollback is in
	// the outbox (retryRollbacks).
	rollbacks retrySet
	// retired are the actions no longer configured whose series may
	// still be exposed: they are deleted once nothing of the action is
	// open that can still count (pruneLocked).
	retired map[string]bool
	// retryMaxWait is the most passes of the loop between two attempts of
	// a retry (the outbox's max backoff over the loop's interval);
	// retryMaxAge how long an alert trigger or a rollback is retried
	// (the outbox's max age).
	retryMaxWait int
	retryMaxAge  time.Duration
	client       *http.Client
	now          func() time.Time
	logger       *slog.Logger
	// note records a decision in the history of alerts, and noteInOrder
	// one that may come after what it caused (a delivery); called without
	// mu held.
	note, noteInOrder func([]model.Fingerprint, Decision)
	// dirty is set when the state changed since it was last written.
	dirty bool
	// tlsLogged is the TLS error last logged of each action, whose
	// retries log at debug until it changes or a delivery succeeds.
	tlsLogged map[string]string

	triggered       *prometheus.CounterVec
	refused         *prometheus.CounterVec
	verification    *prometheus.CounterVec
	enqueueFailures *prometheus.CounterVec
	enqueueRetries  *prometheus.CounterVec
	unknown         *prometheus.CounterVec
}

func newActionRunner(storage string, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time) (*actionRunner, error) {
	r := &actionRunner{
		file:         newStateFile(filepath.Join(storage, "actions.json")),
		cfgs:         map[string]*alertconfig.Action{},
		byKey:        map[string]*actionRequest{},
		byID:         map[string]*actionRequest{},
		slots:        map[string]time.Time{},
		sched:        map[string]string{},
		unsent:       map[string]*sending{},
		retries:      retrySet{},
		schedRetries: retrySet{},
		rollbacks:    retrySet{},
		retired:      map[string]bool{},
		tlsLogged:    map[string]string{},
		retryMaxWait: int(outbox.DefaultMaxBackoff / (15 * time.Second)),
		retryMaxAge:  outbox.DefaultMaxAge,
		client:       &http.Client{},
		now:          now,
		logger:       logger,
		note:         func([]model.Fingerprint, Decision) {},
		noteInOrder:  func([]model.Fingerprint, Decision) {},
		triggered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_actions_triggered_total",
			Help: "The total number of times an action was sent to its receiver, by what triggered it (alert, escalation, schedule, rollback).",
		}, []string{"action", "trigger"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_actions_refused_total",
			Help: "The total number of action triggers refused, by reason (cooldown, budget, rejected by an operator, approval expired).",
		}, []string{"action", "reason"}),
		verification: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_actions_verification_total",
			Help: "The total number of verifications of triggered actions, by result (resolved: the alerts resolved in time; failed: they did not).",
		}, []string{"action", "result"}),
		enqueueFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_actions_enqueue_failures_total",
			Help: "The total number of actions decided sent whose message the outbox refused to store (a full disk, say), by what triggered them; those of alerts, schedules and rollbacks are retried.",
		}, []string{"action", "trigger"}),
		enqueueRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_actions_enqueue_retries_total",
			Help: "The total number of retries of alert, schedule and rollback triggers whose message the outbox had refused, by trigger.",
		}, []string{"action", "trigger"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_actions_unknown_outcomes_total",
			Help: "The total number of action requests sent in full to a receiver without idempotency (GitHub, GitLab) that got no answer before the timeout: not retried, as the CI may have started the run.",
		}, []string{"action"}),
	}
	var st actionState
	if _, err := readJSON(r.file.path, &st); err != nil {
		return nil, fmt.Errorf("couldn't read the actions' state: %w", err)
	}
	for _, req := range st.Requests {
		r.add(req)
	}
	if st.Slots != nil {
		r.slots = st.Slots
	}
	if st.Schedules != nil {
		r.sched = st.Schedules
	}
	for _, rb := range st.Rollbacks {
		// Due at the first pass.
		r.rollbacks[rb.Request] = &retry{action: rb.Action, key: rb.Key, request: rb.Request, why: rb.Why,
			attempts: rb.Attempts, since: rb.Since, err: rb.Err}
	}
	reg.MustRegister(r.triggered, r.refused, r.verification, r.enqueueFailures, r.enqueueRetries, r.unknown)
	return r, nil
}

// add indexes a request. Called with mu held.
func (r *actionRunner) add(req *actionRequest) {
	r.requests = append(r.requests, req)
	r.byKey[req.Key] = req
	r.byID[req.ID] = req
}

// save writes the state file if it changed, forgetting settled requests
// older than actionRetention, outside r.mu: the pipeline takes r.mu for
// every alert that fires (see stateFile). Called without r.mu held, after
// the change is recorded in the alerts' histories: a request sent is
// delivered meanwhile, and its delivery is recorded after its trigger.
func (r *actionRunner) save(now time.Time) { r.saveWith((*stateFile).save, now) }

// trySave is save for the store, after each pass of its stages (an alert
// that fires may trigger an action, with the store's lock held): while
// another write is in progress it does not wait, and leaves the change to
// the next save.
func (r *actionRunner) trySave() { r.saveWith((*stateFile).trySave, r.now()) }

func (r *actionRunner) saveWith(save func(*stateFile, sync.Locker, func() any) error, now time.Time) {
	r.mu.Lock()
	dirty := r.dirty
	r.mu.Unlock()
	if !dirty {
		return
	}
	err := save(r.file, &r.mu, func() any {
		if !r.dirty {
			return nil
		}
		r.dirty = false
		r.requests = slices.DeleteFunc(r.requests, func(req *actionRequest) bool {
			old := now.Sub(req.UpdatedAt) > actionRetention && req.State != stateAwaitingApproval && req.Verification != verifyPending
			if old {
				delete(r.byKey, req.Key)
				delete(r.byID, req.ID)
			}
			return old
		})
		return actionState{Requests: r.snapshot(), Slots: r.slots, Schedules: r.sched, Rollbacks: r.savedRollbacks()}
	})
	if err != nil {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		r.logger.Error("Failed to save the actions' state", "err", err)
	}
}

// snapshot returns the requests as the state file keeps them: a request
// whose message is not in the outbox yet as it was before it was decided
// sent, so that the file never says sent what the outbox does not hold
// (see send). Called with mu held.
func (r *actionRunner) snapshot() []*actionRequest {
	if len(r.unsent) == 0 {
		return r.requests
	}
	out := make([]*actionRequest, 0, len(r.requests))
	for _, req := range r.requests {
		s, ok := r.unsent[req.ID]
		switch {
		case !ok:
			out = append(out, req)
		case s.prev != nil:
			out = append(out, s.prev)
		}
	}
	return out
}

// savedRollbacks returns the rollbacks' retries as the state file keeps
// them, by request. Called with mu held.
func (r *actionRunner) savedRollbacks() []savedRollback {
	out := make([]savedRollback, 0, len(r.rollbacks))
	for _, rt := range r.rollbacks {
		out = append(out, savedRollback{Request: rt.request, Action: rt.action, Key: rt.key, Why: rt.why,
			Attempts: rt.attempts, Since: rt.since, Err: rt.err})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Request < out[j].Request })
	return out
}

// set swaps in the configured actions. A configured action's series are
// created at 0, and those of an action no longer configured deleted
// (pruneLocked).
func (r *actionRunner) set(cfgs []*alertconfig.Action) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.cfgs
	r.cfgs, r.names = map[string]*alertconfig.Action{}, nil
	for _, c := range cfgs {
		r.cfgs[c.Name] = c
		r.names = append(r.names, c.Name)
		delete(r.retired, c.Name)
		for _, t := range actionTriggers {
			r.triggered.WithLabelValues(c.Name, t)
			r.enqueueFailures.WithLabelValues(c.Name, t)
		}
		for _, t := range []string{triggerAlert, triggerSchedule, triggerRollback} {
			r.enqueueRetries.WithLabelValues(c.Name, t)
		}
		for _, reason := range act.Reasons() {
			r.refused.WithLabelValues(c.Name, reason)
		}
		for _, res := range []string{verifyResolved, verifyFailed} {
			r.verification.WithLabelValues(c.Name, res)
		}
		r.unknown.WithLabelValues(c.Name)
	}
	// Those a reload removed, and, at the start, those removed before a
	// restart whose open work the state file kept: that counts when it
	// ends.
	for n := range prev {
		r.retireLocked(n)
	}
	for n := range r.openLocked() {
		r.retireLocked(n)
	}
	r.pruneLocked()
}

// retireLocked marks an action's series for deletion (pruneLocked) if it
// is not configured. Called with mu held.
func (r *actionRunner) retireLocked(name string) {
	if _, ok := r.cfgs[name]; !ok {
		r.retired[name] = true
	}
}

// openLocked returns the actions with open work, which counts in their
// series when it ends: a request awaiting approval (rejected, expired) or
// verification, a send decided whose message is not in the outbox yet
// (sent, refused), and a retry of an alert trigger, a schedule or a
// rollback. Called with mu held.
func (r *actionRunner) openLocked() map[string]bool {
	open := map[string]bool{}
	for _, req := range r.requests {
		if req.State == stateAwaitingApproval || req.Verification == verifyPending {
			open[req.Action] = true
		}
	}
	for _, s := range r.unsent {
		open[s.action] = true
	}
	for _, rs := range []retrySet{r.retries, r.schedRetries, r.rollbacks} {
		for _, rt := range rs {
			open[rt.action] = true
		}
	}
	return open
}

// pruneLocked deletes the series of the retired actions that have no open
// work left, as Prometheus wants the series of what is gone, and as the
// outbox deletes a removed action's lane once it is empty (Outbox.Retain).
// One with open work keeps them until it ends: each place that ends some
// calls it. An action configured again gets its series back at 0 (set).
// Called with mu held.
func (r *actionRunner) pruneLocked() {
	if len(r.retired) == 0 {
		return
	}
	open := r.openLocked()
	for n := range r.retired {
		if open[n] {
			continue
		}
		delete(r.retired, n)
		delete(r.tlsLogged, n)
		for _, v := range []*prometheus.CounterVec{r.triggered, r.refused, r.verification, r.enqueueFailures, r.enqueueRetries, r.unknown} {
			v.DeletePartialMatch(prometheus.Labels{"action": n})
		}
	}
}

// retryLocked records a refusal of the outbox in the retry of k in rs,
// first if it has none yet (retrySet.refused). The retry of an action a
// reload removed meanwhile is open work that counts (openLocked), so its
// series stay until it ends. Called with mu held.
func (r *actionRunner) retryLocked(rs retrySet, k string, first retry, err error) (retry, bool) {
	r.retireLocked(first.action)
	return rs.refused(k, first, err, r.retryMaxWait)
}

// configs returns the configured actions in order.
func (r *actionRunner) configs() []*alertconfig.Action {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*alertconfig.Action, 0, len(r.names))
	for _, n := range r.names {
		out = append(out, r.cfgs[n])
	}
	return out
}

// configured reports whether an action is configured.
func (r *actionRunner) configured(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.cfgs[name]
	return ok
}

// attempts returns the past attempts of an action. Called with mu held.
func (r *actionRunner) attempts(name string) []act.Attempt {
	var out []act.Attempt
	for _, req := range r.requests {
		if t, ok := req.attemptTime(); ok && req.Action == name {
			out = append(out, act.Attempt{Model: req.Model, Time: t})
		}
	}
	return out
}

// requestID derives a request's id from its idempotency key, so a trigger
// repeated after a restart finds its request.
func requestID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:8])
}

// trigger triggers an action: it refuses it if a guardrail says so, keeps
// it for approval if the action needs one, or decides to send it, and
// then returns the send for the caller to make (send) once it holds no
// lock; s is nil when there is nothing to send. fresh is false when a
// request with this key exists already: nothing was done, and d is
// empty. The caller records d, or, if there is a send, makes it and
// records its decision (s.d), then saves.
//
// A request whose key the outbox holds already (enqueued before a crash
// lost the state file's record of it) is not decided again: it was sent,
// and takes what became of its message (adopt), with no send, whatever
// the guardrails say now. They may refuse it: after the restart, another
// request for the same action and model may have taken the cooldown the
// lost one held, and the outbox, which would have dropped the duplicate
// (send), would never see it.
func (r *actionRunner) trigger(now time.Time, name, trig string, labels map[string]string, alerts []string, key string) (req *actionRequest, d Decision, s *sending, fresh bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cfgs[name]
	if !ok {
		return nil, Decision{}, nil, false, fmt.Errorf("%w %q", errNoAction, name)
	}
	if old, ok := r.byKey[key]; ok {
		return old.clone(), Decision{}, nil, false, nil
	}
	req = &actionRequest{ID: requestID(key), Action: name, Trigger: trig, Key: key, Model: labels["model"], Labels: labels,
		Alerts: alerts, CreatedAt: now, UpdatedAt: now}
	d = Decision{Time: now, Stage: "action"}
	if h, ok := r.heldLocked(key); ok {
		markSent(c, req, now)
		adopt(req, h)
		d.Action, d.Reason = droppedAction(h), droppedReason(name, req.ID, key, h)
		delete(r.retries, key)
		r.add(req)
		r.dirty = true
		return req.clone(), d, nil, true, nil
	}
	g := act.Guard{Cooldown: c.CooldownDuration(), DailyBudget: c.DailyBudget}
	switch ref := g.Check(req.Model, r.attempts(name), now); {
	case ref != nil:
		req.State, req.Reason = stateRefused, ref.Detail
		r.refused.WithLabelValues(name, ref.Reason).Inc()
		d.Action, d.Reason = "refused", fmt.Sprintf("action %q (request %s) refused: %s", name, req.ID, ref.Detail)
	case c.Approval.Required:
		req.State = stateAwaitingApproval
		req.Reason = fmt.Sprintf("awaiting approval until %s: POST /api/v1/actions/requests/%s/approve or /reject",
			now.Add(time.Duration(c.Approval.Timeout)).UTC().Format(time.RFC3339), req.ID)
		d.Action, d.Reason = "awaiting_approval", fmt.Sprintf("action %q (request %s) %s", name, req.ID, req.Reason)
	default:
		if s, err = r.sendLocked(c, req, nil, now); err != nil {
			return nil, Decision{}, nil, false, err
		}
		d.Action, d.Reason = "triggered", r.sentReason(c, req)
		s.d = d
	}
	r.add(req)
	r.dirty = true
	return req.clone(), d, s, true, nil
}

// heldLocked returns what the outbox holds of a key, if it holds it. A
// failed lookup is logged, and the trigger decided as if the key were not
// held: the outbox still drops a duplicate at the enqueue (send). Called
// with mu held, unlike the enqueue: a bbolt read runs alongside a write
// and does not wait for its flush to the disk (only, briefly, for a remap
// of the file when it grows).
func (r *actionRunner) heldLocked(key string) (outbox.Dropped, bool) {
	if r.held == nil {
		return outbox.Dropped{}, false
	}
	h, ok, err := r.held(key)
	if err != nil {
		r.logger.Warn("Failed to look up an action's key in the outbox, deciding on it anew", "key", key, "err", err)
		return outbox.Dropped{}, false
	}
	return h, ok
}

// sentReason explains a request just sent. Called with mu held.
func (r *actionRunner) sentReason(c *alertconfig.Action, req *actionRequest) string {
	s := fmt.Sprintf("action %q (%s) sent by %s (request %s, idempotency key %s)", c.Name, c.Type, req.Trigger, req.ID, req.Key)
	if req.VerifyBy != nil {
		s += fmt.Sprintf("; the alert must resolve by %s, else %s", req.VerifyBy.UTC().Format(time.RFC3339), req.OnFailure)
	}
	return s
}

// actionMessage is the payload of an outbox message of the integration
// "action": the request without secrets.
type actionMessage struct {
	Action  string       `json:"action"`
	Request string       `json:"request"`
	HTTP    *act.Request `json:"http"`
}

// sending is the send of a request that trigger or decide decided to
// send: its outbox message, which send enqueues once no lock is held.
type sending struct {
	id, action, trigger string
	msg                 *outbox.Message
	alerts              []model.Fingerprint
	// prev is the request as it was before the decision (awaiting
	// approval), nil for a new one: what the state file keeps until the
	// message is in the outbox, and what the request is again if the
	// outbox refuses it.
	prev *actionRequest
	// d is the decision to record once the outbox took the message
	// (after an approval, prefix says so): sent, or, if the outbox held
	// its key already (dropped), not sent again.
	d       Decision
	prefix  string
	dropped *outbox.Dropped
}

// sendLocked renders the request, marks it sent (from now on it counts
// against the guardrails) and starts its verification; it returns the
// send to make (send). prev is the request as it was before, nil for a
// new one. Called with mu held.
func (r *actionRunner) sendLocked(c *alertconfig.Action, req, prev *actionRequest, now time.Time) (*sending, error) {
	hr, err := c.Target().Build(act.Data{Action: c.Name, Trigger: req.Trigger, Key: req.Key, Time: now, Labels: req.Labels, Alerts: req.Alerts})
	if err != nil {
		return nil, fmt.Errorf("action %q: %w", c.Name, err)
	}
	p, err := json.Marshal(actionMessage{Action: c.Name, Request: req.ID, HTTP: hr})
	if err != nil {
		return nil, err
	}
	s := &sending{id: req.ID, action: c.Name, trigger: req.Trigger, alerts: req.fingerprints(), prev: prev,
		msg: &outbox.Message{Key: req.Key, Receiver: c.Name, Integration: integrationAction, Payload: p, Created: now}}
	r.unsent[req.ID] = s
	markSent(c, req, now)
	return s, nil
}

// markSent marks a request sent at now, from when it counts against the
// guardrails, and starts its verification.
func markSent(c *alertconfig.Action, req *actionRequest, now time.Time) {
	req.State, req.Reason, req.SentAt, req.UpdatedAt = stateSent, "", &now, now
	if c.Verify != nil && len(req.Alerts) > 0 {
		by := now.Add(time.Duration(c.Verify.Within))
		req.Verification, req.VerifyBy, req.OnFailure = verifyPending, &by, c.Verify.OnFailure
		if req.OnFailure != alertconfig.OnFailureEscalate {
			req.OnFailure = "run " + req.OnFailure
		}
	}
}

// send puts the message of a request that trigger or decide decided to
// send into the outbox, without mu held: an enqueue is a bbolt commit
// flushed to the disk, and with mu held a slow disk would stall every
// other action's decision and the pipeline, which takes mu (with the
// store's lock held) for every alert that fires.
//
// Until the message is in the outbox, the state file keeps the request
// as it was before the decision (snapshot): a crash in between leaves no
// request sent whose message is nowhere, which the trigger repeated after
// the restart would find by its key and never send; it leaves no trace,
// and that trigger decides again. After the enqueue, a crash before the
// state is saved does the same, and the outbox drops the message of a key
// it holds or has delivered: the action is not sent twice (and the
// receiver gets its key as Idempotency-Key besides). If the outbox
// refuses the message, the request is as it was before: a new one is
// forgotten, so that the same trigger, repeated (the alert taken in
// again, a restart), tries again, and an approved one awaits approval
// again. Alert triggers and schedules are also tried again on the loop's
// passes (retry); the error is an *enqueueError.
func (r *actionRunner) send(s *sending) error {
	dropped, err := r.enqueue(s.msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	// The send's open work ends here, after its count.
	defer r.pruneLocked()
	delete(r.unsent, s.id)
	r.dirty = true
	if err == nil && len(dropped) > 0 {
		// Enqueued before a crash that lost the request's record, and
		// triggered again since: not sent again, nor counted.
		h := dropped[0]
		s.dropped = &h
		if req, ok := r.byID[s.id]; ok {
			adopt(req, h)
		}
		s.d.Action, s.d.Reason = droppedAction(h), s.prefix+droppedReason(s.action, s.id, s.msg.Key, h)
		delete(r.retries, s.msg.Key)
		return nil
	}
	if err == nil {
		r.triggered.WithLabelValues(s.action, s.trigger).Inc()
		delete(r.retries, s.msg.Key)
		return nil
	}
	r.enqueueFailures.WithLabelValues(s.action, s.trigger).Inc()
	if req, ok := r.byID[s.id]; ok {
		if s.prev != nil {
			*req = *s.prev.clone()
		} else {
			r.requests = slices.DeleteFunc(r.requests, func(x *actionRequest) bool { return x == req })
			delete(r.byKey, req.Key)
			delete(r.byID, req.ID)
		}
	}
	return &enqueueError{action: s.action, id: s.id, err: err}
}

// adopt makes a request whose message the outbox held already (enqueued
// before a crash lost the state file's record of it) say what became of
// that message: sent when it was enqueued, and delivered or failed if so
// (failed also when its dead letter was discarded since, as the request
// was before the crash); one still pending is delivered later (Send).
// Called with mu held.
func adopt(req *actionRequest, h outbox.Dropped) {
	sent := h.Created
	if sent.IsZero() {
		// Delivered: the outbox keeps only when.
		sent = h.Delivered
	}
	if !sent.IsZero() && req.SentAt != nil {
		if req.VerifyBy != nil {
			by := sent.Add(req.VerifyBy.Sub(*req.SentAt))
			req.VerifyBy = &by
		}
		req.SentAt = &sent
	}
	req.Attempts = max(req.Attempts, h.Attempts)
	if req.State != stateSent {
		// Its delivery, made meanwhile, is recorded already.
		return
	}
	switch h.State {
	case outbox.HeldDelivered:
		req.State, req.LastError, req.Attempts = stateDelivered, "", max(req.Attempts, 1)
		if !h.Delivered.IsZero() {
			req.DeliveredAt = &h.Delivered
		}
	case outbox.HeldDead, outbox.HeldDiscarded:
		req.State, req.LastError = stateFailed, h.LastError
		if strings.HasPrefix(h.LastError, outcomeUnknownPrefix) {
			req.State = stateUnknown
		}
	default:
		req.LastError = h.LastError
	}
}

// droppedAction is the decision's action for a request not sent as the
// outbox held its key: discarded if an operator discarded its dead letter
// (which must not be sent again, nor retried), else already_sent.
func droppedAction(h outbox.Dropped) string {
	if h.State == outbox.HeldDiscarded {
		return "discarded"
	}
	return "already_sent"
}

// notSentAgain reports whether d is a trigger's decision not to send a
// request as the outbox held its key (droppedAction).
func notSentAgain(d Decision) bool {
	return d.Stage == "action" && (d.Action == "already_sent" || d.Action == "discarded")
}

// droppedReason explains a request not sent as the outbox held its key.
func droppedReason(action, id, key string, h outbox.Dropped) string {
	why := fmt.Sprintf("action %q (request %s) not sent again: the outbox holds its idempotency key %s from before a restart", action, id, key)
	switch h.State {
	case outbox.HeldDelivered:
		return why + ", delivered at " + h.Delivered.UTC().Format(time.RFC3339)
	case outbox.HeldDead:
		return why + ", given up: " + h.LastError
	case outbox.HeldDiscarded:
		return why + ", given up (" + h.LastError + ") and its dead letter discarded at " + h.Discarded.UTC().Format(time.RFC3339) + ", never to be sent"
	}
	return why + ", enqueued at " + h.Created.UTC().Format(time.RFC3339) + " and not delivered yet"
}

// enqueueError is send's error: the outbox refused the message.
type enqueueError struct {
	action, id string
	err        error
}

func (e *enqueueError) Error() string {
	return fmt.Sprintf("action %q (request %s) not sent: %v", e.action, e.id, e.err)
}

func (e *enqueueError) Unwrap() error { return e.err }

// deferSend keeps the send of a trigger made with the store's lock held
// for the store's commit (commit).
func (r *actionRunner) deferSend(s *sending) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deferred = append(r.deferred, s)
}

// commit is the store's save, after each pass of its stages, once the
// store's lock is released: it makes the sends the pass's triggers
// decided (onAlertFires) and records their decisions in their alerts'
// history, keeping those the outbox refused to retry (retryRefused), then
// saves the state (trySave).
func (r *actionRunner) commit() {
	r.mu.Lock()
	ss := r.deferred
	r.deferred = nil
	r.mu.Unlock()
	for _, s := range ss {
		err := r.send(s)
		if err == nil {
			// After the send, which may drop it (dropped); its
			// delivery may be recorded already.
			r.noteInOrder(s.alerts, s.d)
			if s.dropped != nil {
				r.logger.Info("Action in the outbox already, not sent again", "action", s.action, "request", s.id, "key", s.msg.Key, "state", s.dropped.State)
			}
			continue
		}
		now := r.now()
		rt, _ := r.retryRefused(s, err, now)
		r.logger.Error("Failed to send an action, will retry", "action", s.action, "request", s.id, "attempts", rt.attempts, "err", err)
		r.note(s.alerts, s.d)
		r.note(s.alerts, Decision{Time: now, Stage: "action", Action: "failed", Reason: err.Error() + "; retried while the alert fires"})
	}
	r.trySave()
}

// retry is an alert trigger, a schedule's run or a rollback whose message
// the outbox refused (a full disk, say), tried again on the loop's passes
// (tickActions): after the first refusal at the next pass, then after 2,
// 4, 8 … passes, up to retryMaxWait. A refused request is forgotten
// (send), so a retry triggers the action anew with the same key: the
// guardrails and the approval apply as to a trigger made then, and the
// outbox's key dedup keeps it from being sent twice. Retries of alerts
// and schedules are kept in memory only: after a restart the alerts are
// taken in again, and a schedule's slot is still due (dueSchedules). A
// rollback's is kept in the state file (rollbacks): nothing else would
// run it again.
type retry struct {
	action, key string
	// alert is the alert that triggered it, for an alert trigger.
	alert model.Fingerprint
	// request is the request whose failed verification runs a rollback,
	// and why its failure.
	request, why string
	// attempts counts the refusals; wait is how many passes to let go by
	// before the next attempt.
	attempts, wait int
	// since is the first refusal; err the latest, logged and recorded
	// when it changes.
	since time.Time
	err   string
}

// refused records one more refusal and the passes to let go by before the
// next attempt, which comes 1, 2, 4 … passes after this one, at most
// maxWait; it reports whether the error changed.
func (rt *retry) refused(err error, maxWait int) (changed bool) {
	rt.attempts++
	gap := 1
	for i := 1; i < rt.attempts && gap < maxWait; i++ {
		gap *= 2
	}
	rt.wait = max(1, min(gap, maxWait)) - 1
	changed = err.Error() != rt.err
	rt.err = err.Error()
	return changed
}

// due reports whether the retry is to be attempted at this pass, counting
// the pass down otherwise.
func (rt *retry) due() bool {
	if rt.wait > 0 {
		rt.wait--
		return false
	}
	return true
}

// retrySet holds the retries of one kind, by what they retry: an alert
// trigger's key, a schedule's action, a rollback's request.
type retrySet map[string]*retry

// refused records a refusal of k's retry, first if it has none yet; it
// returns the retry as it is now, and whether the error changed.
func (rs retrySet) refused(k string, first retry, err error, maxWait int) (retry, bool) {
	rt, ok := rs[k]
	if !ok {
		rt = &first
		rs[k] = rt
	}
	changed := rt.refused(err, maxWait)
	return *rt, changed
}

// due returns the retries to attempt at this pass (counting the others'
// passes down) and those given up on, retried for maxAge, both in the
// order of their keys. Those given up are forgotten if forget is set.
func (rs retrySet) due(now time.Time, maxAge time.Duration, forget bool) (due, givenUp []retry) {
	for _, k := range slices.Sorted(maps.Keys(rs)) {
		rt := rs[k]
		switch {
		case now.Sub(rt.since) >= maxAge:
			if forget {
				delete(rs, k)
			}
			givenUp = append(givenUp, *rt)
		case rt.due():
			due = append(due, *rt)
		}
	}
	return due, givenUp
}

// retryRefused keeps the alert trigger the outbox refused to try it again
// (retry); it returns the retry as it is now, and whether the error
// changed. A request that awaited approval is not retried: it awaits
// approval again (send). Called without mu held.
func (r *actionRunner) retryRefused(s *sending, err error, now time.Time) (retry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.trigger != triggerAlert || s.prev != nil || len(s.alerts) != 1 {
		return retry{attempts: 1}, true
	}
	return r.retryLocked(r.retries, s.msg.Key, retry{action: s.action, key: s.msg.Key, alert: s.alerts[0], since: now}, err)
}

// errApproval is returned for approving or rejecting a request that does
// not wait for it.
var errApproval = errors.New("the request does not await approval")

// decide approves or rejects a request awaiting approval; an approved
// one is decided sent, and its send returned for the caller to make
// (send) once it holds no lock. The caller records d (a rejection) or
// makes the send and records its decision, then saves.
func (r *actionRunner) decide(id, by string, approve bool) (*actionRequest, Decision, *sending, error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	req, ok := r.byID[id]
	if !ok {
		return nil, Decision{}, nil, fmt.Errorf("%w: no request %q", errNoAction, id)
	}
	if req.State != stateAwaitingApproval {
		return nil, Decision{}, nil, fmt.Errorf("%w: request %s is %s", errApproval, id, req.State)
	}
	who := ""
	if by != "" {
		who = " by " + by
	}
	d := Decision{Time: now, Stage: "action"}
	if !approve {
		req.DecidedBy, req.UpdatedAt = by, now
		req.State, req.Reason = stateRejected, "rejected"+who
		r.refused.WithLabelValues(req.Action, act.ReasonRejected).Inc()
		d.Action, d.Reason = "rejected", fmt.Sprintf("action %q (request %s) rejected%s", req.Action, id, who)
		r.dirty = true
		r.pruneLocked()
		return req.clone(), d, nil, nil
	}
	c, ok := r.cfgs[req.Action]
	if !ok {
		return nil, Decision{}, nil, fmt.Errorf("%w %q (no longer configured)", errNoAction, req.Action)
	}
	prev := req.clone()
	req.DecidedBy, req.UpdatedAt = by, now
	s, err := r.sendLocked(c, req, prev, now)
	if err != nil {
		*req = *prev
		return nil, Decision{}, nil, err
	}
	s.prefix = "approved" + who + "; "
	d.Action, d.Reason = "triggered", s.prefix+r.sentReason(c, req)
	s.d = d
	r.dirty = true
	return req.clone(), d, s, nil
}

// expire expires the requests nobody approved in time.
func (r *actionRunner) expire(now time.Time) []*actionRequest {
	defer r.save(now) // after the unlock
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*actionRequest
	for _, req := range r.requests {
		if req.State != stateAwaitingApproval {
			continue
		}
		timeout := alertconfig.DefaultActionApprovalTimeout
		if c, ok := r.cfgs[req.Action]; ok {
			timeout = time.Duration(c.Approval.Timeout)
		}
		if now.Sub(req.CreatedAt) < timeout {
			continue
		}
		req.State, req.Reason, req.UpdatedAt = stateExpired, fmt.Sprintf("nobody approved it within %s", model.Duration(timeout)), now
		r.refused.WithLabelValues(req.Action, act.ReasonExpired).Inc()
		out = append(out, req.clone())
	}
	if len(out) > 0 {
		r.dirty = true
		r.pruneLocked()
	}
	return out
}

// verifying returns the requests whose verification is pending, but for
// those that failed it and wait for their rollback's retry.
func (r *actionRunner) verifying() []*actionRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*actionRequest
	for _, req := range r.requests {
		if _, retried := r.rollbacks[req.ID]; req.Verification == verifyPending && !retried {
			out = append(out, req.clone())
		}
	}
	return out
}

// settle records the outcome of a verification.
func (r *actionRunner) settle(id, result, followUp string, now time.Time) {
	r.mu.Lock()
	req, ok := r.byID[id]
	if !ok || req.Verification != verifyPending {
		r.mu.Unlock()
		return
	}
	req.Verification, req.FollowUp, req.UpdatedAt = result, followUp, now
	r.verification.WithLabelValues(req.Action, result).Inc()
	delete(r.rollbacks, id)
	r.dirty = true
	r.pruneLocked()
	r.mu.Unlock()
	r.save(now)
}

// dueSchedules returns the scheduled actions whose slot came, with the
// slot; an action seen for the first time starts at the next slot. So
// does one whose schedule changed, or that was removed and added back: the
// slot it was at is no slot of its new schedule, and running at once
// because the new schedule's slot in progress is later than it would run
// a nightly retrain at the hour of the reload.
//
// A due slot stays due until the caller reports it run (scheduleRan), once
// its action is in the outbox or settled otherwise (awaiting approval,
// refused by a guardrail): a crash in between, or an outbox that refuses
// the message, leaves it due, and it runs at the next pass, or after the
// restart, with the same idempotency key, which the outbox does not send
// twice. A schedule whose run the outbox refused waits its retry's passes
// (scheduleRefused). Slots missed meanwhile run once, as the latest.
func (r *actionRunner) dueSchedules(now time.Time) map[string]time.Time {
	defer r.save(now) // after the unlock
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]time.Time{}
	for n := range r.slots {
		if c, ok := r.cfgs[n]; !ok || c.Trigger.Schedule == nil {
			delete(r.slots, n)
			delete(r.sched, n)
			delete(r.schedRetries, n)
			r.dirty = true
		}
	}
	r.pruneLocked()
	for _, n := range r.names {
		s := r.cfgs[n].Trigger.Schedule
		if s == nil {
			continue
		}
		slot := act.Schedule{Every: time.Duration(s.Every), Offset: time.Duration(s.Offset)}.Slot(now)
		sched := s.Every.String() + "/" + s.Offset.String()
		last, ok := r.slots[n]
		if was, known := r.sched[n]; ok && known && was != sched {
			ok = false
		}
		switch {
		case !ok:
			r.slots[n], r.sched[n], r.dirty = slot, sched, true
			delete(r.schedRetries, n)
		case slot.After(last):
			if r.sched[n] != sched {
				r.sched[n], r.dirty = sched, true
			}
			if rt, ok := r.schedRetries[n]; ok {
				if !rt.due() {
					continue
				}
				r.enqueueRetries.WithLabelValues(n, triggerSchedule).Inc()
			}
			out[n] = slot
		case r.sched[n] != sched:
			r.sched[n], r.dirty = sched, true
		}
	}
	return out
}

// scheduleRan records that a schedule's due slot ran: its action is in
// the outbox, or was settled otherwise. It saves the state.
func (r *actionRunner) scheduleRan(name string, slot, now time.Time) {
	r.mu.Lock()
	if last, ok := r.slots[name]; ok && slot.After(last) {
		r.slots[name], r.dirty = slot, true
	}
	delete(r.schedRetries, name)
	r.pruneLocked()
	r.mu.Unlock()
	r.save(now)
}

// scheduleRefused records that the outbox refused a schedule's run: its
// slot stays due, and is retried after the retry's passes. It returns the
// retry as it is now, and whether the error changed.
func (r *actionRunner) scheduleRefused(name string, err error, now time.Time) (retry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retryLocked(r.schedRetries, name, retry{action: name, since: now}, err)
}

// dueRetries returns the alert triggers to retry at this pass (retry),
// and those given up on: retried for retryMaxAge.
func (r *actionRunner) dueRetries(now time.Time) (due, givenUp []retry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.pruneLocked()
	return r.retries.due(now, r.retryMaxAge, true)
}

// rollbackRefused keeps the rollback of request id, which failed
// verification (why), to retry it: the outbox refused it. It returns the
// retry as it is now, and whether the error changed.
func (r *actionRunner) rollbackRefused(id, action, key, why string, err error, now time.Time) (retry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirty = true
	return r.retryLocked(r.rollbacks, id, retry{action: action, key: key, request: id, why: why, since: now}, err)
}

// dueRollbacks returns the rollbacks to retry at this pass, and those
// given up on: retried for retryMaxAge. Those given up stay until their
// request's verification is settled.
func (r *actionRunner) dueRollbacks(now time.Time) (due, givenUp []retry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rollbacks.due(now, r.retryMaxAge, false)
}

// dropRollback forgets the retry of the rollback of a request that is
// gone or settled.
func (r *actionRunner) dropRollback(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.rollbacks, id)
	r.dirty = true
	r.pruneLocked()
}

// dropRetry forgets the retry of an alert trigger.
func (r *actionRunner) dropRetry(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.retries, key)
	r.pruneLocked()
}

// list returns the requests, newest first.
func (r *actionRunner) list() []*actionRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*actionRequest, 0, len(r.requests))
	for _, req := range r.requests {
		out = append(out, req.clone())
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out
}

// get returns the request with this id.
func (r *actionRunner) get(id string) (*actionRequest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	req, ok := r.byID[id]
	if !ok {
		return nil, false
	}
	return req.clone(), true
}

// usedToday returns how many triggers of an action count against its
// budget today.
func (r *actionRunner) usedToday(name string, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return act.UsedToday(r.attempts(name), now)
}

// Send implements outbox.Sender: it sends an action's request with the
// action's current credentials, signed at the time of the attempt.
func (r *actionRunner) Send(ctx context.Context, m *outbox.Message) error {
	var msg actionMessage
	if err := json.Unmarshal(m.Payload, &msg); err != nil || msg.HTTP == nil {
		return outbox.Permanent(fmt.Errorf("malformed action message: %v", err))
	}
	r.mu.Lock()
	c := r.cfgs[msg.Action]
	r.mu.Unlock()
	if c == nil {
		err := outbox.Permanent(fmt.Errorf("action %q is no longer configured", msg.Action))
		r.delivered(msg.Request, err)
		return err
	}
	err := r.deliver(ctx, c, msg.HTTP, m.Key)
	r.delivered(msg.Request, err)
	return err
}

// AttemptTimeout implements outbox.AttemptTimeouter: an attempt of an
// action's message gets the action's timeout, whatever the outbox's own
// limit of an attempt.
func (r *actionRunner) AttemptTimeout(m *outbox.Message) time.Duration {
	var msg actionMessage
	if json.Unmarshal(m.Payload, &msg) != nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.cfgs[msg.Action]; c != nil {
		return time.Duration(c.Timeout)
	}
	return 0
}

// deliver sends one attempt. A request written in full whose answer did
// not come is not retried when its receiver has no idempotency
// (act.Idempotent): it fails with an outcomeUnknownError, as the CI may
// have started the run. One that failed before it was sent (DNS, a
// connection refused, a TLS handshake) is retried.
func (r *actionRunner) deliver(ctx context.Context, c *alertconfig.Action, hr *act.Request, key string) error {
	creds, err := credentials(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.Timeout))
	defer cancel()
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			sent.Store(true)
		}
	}})
	now := r.now()
	req, err := hr.HTTP(ctx, creds, key, now)
	if err != nil {
		return outbox.Permanent(fmt.Errorf("couldn't build the request: %w", err))
	}
	if !act.Idempotent(c.Type) {
		// net/http takes an Idempotency-Key for a promise that a repeat is
		// harmless, and sends the request again on a new connection when
		// a kept-alive one closes before its answer: this CI may have
		// started a run on the first. The key goes out as it is, under a
		// map key the transport does not look for (header names are case
		// insensitive on the wire).
		if v := req.Header.Values(act.HeaderIdempotencyKey); v != nil {
			req.Header.Del(act.HeaderIdempotencyKey)
			req.Header[strings.ToLower(act.HeaderIdempotencyKey)] = v
		}
	}
	resp, err := r.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = fmt.Errorf("couldn't reach %s: %w", redactURL(hr.URL), err)
		if sent.Load() && !act.Idempotent(c.Type) {
			return outbox.Permanent(&outcomeUnknownError{err: err})
		}
		return err
	}
	defer resp.Body.Close()
	if resp.Request != nil && resp.Request.Method != req.Method {
		// A 301, 302 or 303 turned the POST into a GET without the body:
		// whatever answers it triggered nothing. Where to, by scheme and
		// host only (the path may hold a secret).
		code := 0
		for r := resp.Request.Response; r != nil; r = r.Request.Response {
			code = r.StatusCode
			if r.Request == nil {
				break
			}
		}
		return outbox.Permanent(fmt.Errorf("redirected (%d) to %s://%s, which the client followed with a %s without the request: configure the URL it redirects to",
			code, resp.Request.URL.Scheme, resp.Request.URL.Host, resp.Request.Method))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	err = act.Check(c.Type, resp, body, now)
	var se *act.StatusError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.Retry && se.RetryAfter > 0:
		return outbox.RetryAfter(se.RetryAfter, err)
	case errors.As(err, &se) && !se.Retry:
		return outbox.Permanent(err)
	}
	return err
}

// done is the outbox's OnDone: an action message it dead-lettered after
// retrying it up to its max age fails its request, which would otherwise
// stay sent. A permanent failure has failed it already.
func (r *actionRunner) done(m outbox.Message, err error) {
	if err == nil || m.Integration != integrationAction {
		return
	}
	var msg actionMessage
	if json.Unmarshal(m.Payload, &msg) != nil {
		return
	}
	r.mu.Lock()
	req, ok := r.byID[msg.Request]
	if !ok || req.State == stateFailed || req.State == stateUnknown {
		r.mu.Unlock()
		return
	}
	now := r.now()
	req.State, req.LastError, req.UpdatedAt = stateFailed, err.Error(), now
	d := Decision{Time: now, Stage: "action", Action: "failed",
		Reason: fmt.Sprintf("action %q (request %s) failed, given up: %v", req.Action, msg.Request, err)}
	fps := req.fingerprints()
	r.dirty = true
	r.mu.Unlock()
	r.note(fps, d)
	r.save(now)
}

// discarded records in the history of its request's alerts that an
// operator (by) discarded the dead letter of an action.
func (r *actionRunner) discarded(m outbox.Message, by string, now time.Time) {
	var msg actionMessage
	if json.Unmarshal(m.Payload, &msg) != nil {
		return
	}
	r.mu.Lock()
	req, ok := r.byID[msg.Request]
	var fps []model.Fingerprint
	if ok {
		fps = req.fingerprints()
	}
	r.mu.Unlock()
	if len(fps) > 0 {
		r.note(fps, Decision{Time: now, Stage: "action", Action: "discarded",
			Reason: fmt.Sprintf("dead letter of action %q (request %s) discarded by %s, never to be sent", msg.Action, msg.Request, by)})
	}
}

// delivered records an attempt's outcome in the request and the alerts'
// history.
func (r *actionRunner) delivered(id string, err error) {
	r.mu.Lock()
	req, ok := r.byID[id]
	if !ok {
		r.mu.Unlock()
		return
	}
	now := r.now()
	req.Attempts++
	req.UpdatedAt = now
	d := Decision{Time: now, Stage: "action"}
	var (
		unknown *outcomeUnknownError
		// tlsAgain: a TLS error logged already, whose retry logs at
		// debug only.
		tlsAgain bool
	)
	switch {
	case err == nil:
		req.State, req.DeliveredAt, req.LastError = stateDelivered, &now, ""
		d.Action, d.Reason = "delivered", fmt.Sprintf("action %q (request %s) delivered", req.Action, id)
		delete(r.tlsLogged, req.Action)
	case errors.As(err, &unknown):
		req.State, req.LastError = stateUnknown, err.Error()
		d.Action, d.Reason = "unknown", fmt.Sprintf("action %q (request %s) %v; check the CI, then redrive its dead letter (key %s) to send it again, or discard it", req.Action, id, err, req.Key)
		if _, ok := r.cfgs[req.Action]; ok {
			r.unknown.WithLabelValues(req.Action).Inc()
		}
	case outbox.IsPermanent(err):
		req.State, req.LastError = stateFailed, err.Error()
		d.Action, d.Reason = "failed", fmt.Sprintf("action %q (request %s) failed, not retried: %v", req.Action, id, err)
	default:
		req.LastError = err.Error()
		if outbox.IsTLS(err) {
			tlsAgain = r.tlsLogged[req.Action] == err.Error()
			r.tlsLogged[req.Action] = err.Error()
		} else {
			delete(r.tlsLogged, req.Action)
		}
	}
	fps, name, key, attempts := req.fingerprints(), req.Action, req.Key, req.Attempts
	alertname, alerts := req.Labels["alertname"], slices.Clone(req.Alerts)
	r.dirty = true
	r.mu.Unlock()
	switch {
	case unknown != nil:
		r.logger.Warn("Action outcome unknown, not retried: the request was sent and no answer came", "action", name, "request", id,
			"key", key, "alertname", alertname, "alerts", alerts, "attempts", attempts, "err", err)
	case d.Action != "":
	case tlsAgain:
		r.logger.Debug("Action attempt failed on TLS again, will retry later", "action", name, "request", id, "attempts", attempts, "err", err)
	case outbox.IsTLS(err):
		r.logger.Error("Action attempt failed: the CI's TLS certificate is not trusted or its TLS handshake failed; retrying until it is fixed, logged once until the error changes",
			"action", name, "request", id, "attempts", attempts, "err", err)
	default:
		r.logger.Warn("Action attempt failed, will retry later", "action", name, "request", id, "attempts", attempts, "err", err)
	}
	if d.Action != "" {
		r.note(fps, d)
	}
	r.save(now)
}

// credentials reads an action's secrets, from their files if so
// configured. Errors name the file, never its content.
func credentials(c *alertconfig.Action) (act.Credentials, error) {
	read := func(s string, file string) (string, error) {
		if file == "" {
			return s, nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("couldn't read a secret of action %q: %w", c.Name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var (
		cr  = act.Credentials{Username: c.Username}
		err error
	)
	if cr.Token, err = read(string(c.Token), c.TokenFile); err != nil {
		return cr, err
	}
	if cr.TriggerToken, err = read(string(c.TriggerToken), c.TriggerTokenFile); err != nil {
		return cr, err
	}
	if cr.Secret, err = read(string(c.Secret), c.SecretFile); err != nil {
		return cr, err
	}
	return cr, nil
}

// redactURL drops a URL's user information and query, which may hold
// credentials.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid url>"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// actionLabels are the labels an action sees of an alert: its labels, and
// the classifier's category, priority and action in place of labels of
// those names.
func actionLabels(al *Alert) map[string]string {
	out := make(map[string]string, len(al.Labels)+3)
	for k, v := range al.Labels {
		out[string(k)] = string(v)
	}
	if al.classification != nil {
		for _, k := range []string{annotationCategory, annotationPriority, annotationAction} {
			if v, ok := al.Annotations[model.LabelName(k)]; ok {
				out[k] = string(v)
			}
		}
	}
	return out
}

// onAlertFires triggers the actions whose matchers select an alert that
// fires unsuppressed, once per action and firing episode. The store calls
// it with its lock held, so it records the decisions on al directly; the
// store sends the actions decided sent and saves the actions' state once
// it releases its lock (commit).
func (a *Alertd) onAlertFires(now time.Time, al *Alert) {
	var labels map[string]string
	for _, c := range a.actions.configs() {
		if len(c.Trigger.Parsed) == 0 {
			continue
		}
		if labels == nil {
			labels = actionLabels(al)
		}
		if !triggerMatches(c, labels) {
			continue
		}
		key := alertActionKey(c.Name, al.Fingerprint, al.StartsAt)
		req, d, s, fresh, err := a.actions.trigger(now, c.Name, triggerAlert, labels, []string{al.Fingerprint.String()}, key)
		if err != nil {
			al.record(Decision{Time: now, Stage: "action", Action: "failed", Reason: err.Error()})
			a.logger.Error("Failed to trigger an action", "action", c.Name, "err", err)
			continue
		}
		switch {
		case s != nil:
			// Recorded once the outbox took it (commit).
			a.actions.deferSend(s)
		case fresh:
			al.record(d)
			if notSentAgain(d) {
				a.logger.Info("Action in the outbox already, not sent again", "action", c.Name, "request", req.ID, "key", key, "state", req.State)
			}
		}
		if fresh {
			if req.State == stateAwaitingApproval {
				// Called with the store locked: ask outside it.
				go a.requestApproval(a.ctx, req)
			}
		}
	}
}

// triggerMatches reports whether an action's trigger.matchers select an
// alert with these labels (actionLabels).
func triggerMatches(c *alertconfig.Action, labels map[string]string) bool {
	if len(c.Trigger.Parsed) == 0 {
		return false
	}
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return c.Trigger.Parsed.Matches(ls)
}

// alertActionKey is the idempotency key of an action triggered by an
// alert: one per action and firing episode.
func alertActionKey(action string, fp model.Fingerprint, startsAt time.Time) string {
	return fmt.Sprintf("action/%s/alert/%s/%d", action, fp, startsAt.UnixNano())
}

// firingForActions returns the labels actions see of the alert with this
// fingerprint (actionLabels) and its start, if it fires unsuppressed at
// now.
func (s *store) firingForActions(now time.Time, fp model.Fingerprint) (map[string]string, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	al, ok := s.alerts[fp]
	if !ok || al.Suppressed || al.ResolvedAt(now) {
		return nil, time.Time{}, false
	}
	return actionLabels(al), al.StartsAt, true
}

// retryAlertActions tries again the alert triggers whose message the
// outbox refused (retry) while their alert fires unsuppressed, in the same
// firing episode, and the action's matchers still select it: the alert
// need not be sent again (an Alertmanager's repeat_interval may be hours,
// a rule's alert may never change). The trigger is made anew, so the
// guardrails and the approval apply as they stand now. One refused again
// waits longer; one retried for the outbox's max age is given up.
func (a *Alertd) retryAlertActions(ctx context.Context, now time.Time) {
	due, givenUp := a.actions.dueRetries(now)
	for _, rt := range givenUp {
		why := fmt.Sprintf("action %q not sent, given up after %d refusals of the outbox in %s: %s",
			rt.action, rt.attempts, model.Duration(now.Sub(rt.since)), rt.err)
		a.store.note([]model.Fingerprint{rt.alert}, Decision{Time: now, Stage: "action", Action: "failed", Reason: why})
		a.logger.Error("Gave up on an action the outbox refused", "action", rt.action, "key", rt.key, "attempts", rt.attempts, "err", rt.err)
	}
	cfgs := map[string]*alertconfig.Action{}
	for _, c := range a.actions.configs() {
		cfgs[c.Name] = c
	}
	for _, rt := range due {
		c := cfgs[rt.action]
		labels, startsAt, ok := a.store.firingForActions(now, rt.alert)
		if !ok || c == nil || alertActionKey(rt.action, rt.alert, startsAt) != rt.key || !triggerMatches(c, labels) {
			// Resolved, suppressed (its release triggers it again),
			// refired (a new episode, a new trigger), or the action
			// changed.
			a.actions.dropRetry(rt.key)
			a.logger.Debug("Dropped the retry of an action: its alert no longer triggers it", "action", rt.action, "key", rt.key)
			continue
		}
		a.actions.enqueueRetries.WithLabelValues(rt.action, triggerAlert).Inc()
		fps := []model.Fingerprint{rt.alert}
		req, d, s, fresh, err := a.actions.trigger(now, rt.action, triggerAlert, labels, []string{rt.alert.String()}, rt.key)
		switch {
		case err != nil:
			a.actions.dropRetry(rt.key)
			a.store.note(fps, Decision{Time: now, Stage: "action", Action: "failed", Reason: err.Error()})
			a.logger.Error("Failed to trigger an action", "action", rt.action, "err", err)
			continue
		case !fresh:
			// Triggered meanwhile: the alert was taken in again.
			a.actions.dropRetry(rt.key)
			continue
		}
		if s != nil {
			if err := a.actions.send(s); err != nil {
				again, changed := a.actions.retryRefused(s, err, now)
				if changed {
					a.store.note(fps, Decision{Time: now, Stage: "action", Action: "failed", Reason: err.Error() + "; retried while the alert fires"})
					a.logger.Warn("Action not sent, will retry later", "action", rt.action, "request", s.id, "attempts", again.attempts, "err", err)
				} else {
					a.logger.Debug("Action not sent, will retry later", "action", rt.action, "request", s.id, "attempts", again.attempts, "err", err)
				}
				continue
			}
			d = s.d
			if s.dropped == nil {
				d.Reason += fmt.Sprintf(", after %d refusals of the outbox", rt.attempts)
			}
		}
		a.actions.dropRetry(rt.key)
		// After the send: a refused attempt records nothing but the
		// refusal. The delivery may have been recorded already; the
		// decision goes before it.
		a.store.noteInOrder(fps, d)
		a.actions.save(now)
		a.logger.Info("Action triggered after the outbox refused it", "action", rt.action, "request", req.ID, "state", req.State, "attempts", rt.attempts)
		if req.State == stateAwaitingApproval {
			a.requestApproval(ctx, req)
		}
	}
}

// runAction triggers the named action for the alerts of an escalation
// step; key identifies the step (the same key runs the action once). The
// guardrails apply; an action that needs approval waits for it. It returns
// an error wrapping errActionRefused when a guardrail refused it, and
// records its decision in the alerts' history itself, so it must not be
// called with the store's lock held.
func (a *Alertd) runAction(ctx context.Context, name string, alerts []*Alert, key string) error {
	return a.triggerAction(ctx, name, triggerEscalation, commonActionLabels(alerts), alertFingerprints(alerts), "action/"+name+"/escalation/"+key)
}

// triggerAction triggers an action and records the decision in the
// history of its alerts.
func (a *Alertd) triggerAction(ctx context.Context, name, trig string, labels map[string]string, fps []string, key string) error {
	now := a.opts.Now()
	req, d, s, fresh, err := a.actions.trigger(now, name, trig, labels, fps, key)
	if err != nil {
		return err
	}
	if fresh {
		switch {
		case s != nil:
			if err := a.sendAction(s, now); err != nil {
				return err
			}
		case notSentAgain(d):
			// Its delivery may be recorded already.
			a.store.noteInOrder(req.fingerprints(), d)
		default:
			a.store.note(req.fingerprints(), d)
		}
		a.actions.save(now)
		switch {
		case s != nil && s.dropped != nil:
			a.logger.Info("Action in the outbox already, not sent again", "action", name, "trigger", trig, "request", req.ID, "key", key, "state", s.dropped.State)
		case notSentAgain(d):
			a.logger.Info("Action in the outbox already, not sent again", "action", name, "trigger", trig, "request", req.ID, "key", key, "state", req.State)
		default:
			a.logger.Info("Action triggered", "action", name, "trigger", trig, "request", req.ID, "state", req.State)
		}
		if req.State == stateAwaitingApproval {
			a.requestApproval(ctx, req)
		}
	}
	if req.State == stateRefused || req.State == stateRejected || req.State == stateExpired {
		return fmt.Errorf("%w: %s", errActionRefused, req.Reason)
	}
	return nil
}

// sendAction makes the send trigger or decide decided (send), then
// records its decision in the alerts' history, before its delivery if
// that was recorded meanwhile: sent, or not sent again if the outbox held
// its key already. One the outbox refuses is recorded decided, then
// failed, and the state saved.
func (a *Alertd) sendAction(s *sending, now time.Time) error {
	err := a.actions.send(s)
	if err != nil {
		a.store.note(s.alerts, s.d)
		a.store.note(s.alerts, Decision{Time: now, Stage: "action", Action: "failed", Reason: err.Error()})
		a.actions.save(now)
		return err
	}
	a.store.noteInOrder(s.alerts, s.d)
	return nil
}

// commonActionLabels returns the labels all the alerts share, as actions
// see them.
func commonActionLabels(alerts []*Alert) map[string]string {
	var out map[string]string
	for _, al := range alerts {
		ls := actionLabels(al)
		if out == nil {
			out = ls
			continue
		}
		for k, v := range out {
			if ls[k] != v {
				delete(out, k)
			}
		}
	}
	if out == nil {
		out = map[string]string{}
	}
	return out
}

func alertFingerprints(alerts []*Alert) []string {
	out := make([]string, 0, len(alerts))
	for _, al := range alerts {
		fp := al.Fingerprint
		if fp == 0 {
			fp = al.Labels.Fingerprint()
		}
		out = append(out, fp.String())
	}
	return out
}

// approvalReceivers returns the receivers asked to approve the action's
// requests.
func (a *Alertd) approvalReceivers(action string) []string {
	for _, c := range a.actions.configs() {
		if c.Name == action {
			return c.Approval.Receivers
		}
	}
	return nil
}

// approvalLabels are the labels of the alert that asks for a request's
// approval.
func approvalLabels(req *actionRequest) model.LabelSet {
	ls := model.LabelSet{model.AlertNameLabel: "ActionAwaitingApproval", "action": model.LabelValue(req.Action)}
	if req.Model != "" {
		ls["model"] = model.LabelValue(req.Model)
	}
	return ls
}

// requestApproval tells the action's approval receivers of a request
// awaiting approval, through the outbox: a Slack receiver with a signing
// secret shows Approve and Reject buttons, which call approveAction and
// rejectAction; PagerDuty opens an incident. closeApproval ends it.
func (a *Alertd) requestApproval(ctx context.Context, req *actionRequest) {
	receivers := a.approvalReceivers(req.Action)
	if len(receivers) == 0 {
		return
	}
	now := a.opts.Now()
	al := amalert.New(model.Alert{Labels: approvalLabels(req), StartsAt: now, Annotations: model.LabelSet{
		"summary":     model.LabelValue(fmt.Sprintf("Action %q (request %s, by %s) awaits approval", req.Action, req.ID, req.Trigger)),
		"description": model.LabelValue(req.Reason),
	}}, now, false)
	extra := map[string]string{notice.ExtraEvent: notice.EventApproval, notice.ExtraActionRequest: req.ID, notice.ExtraGroupKey: "action/" + req.ID}
	for _, r := range receivers {
		if err := a.notify.SendToReceiver(ctx, r, "approval/"+req.ID+"/"+r, []*amalert.Alert{al}, extra); err != nil {
			a.logger.Error("Couldn't ask for an action's approval", "action", req.Action, "request", req.ID, "receiver", r, "err", err)
		}
	}
}

// closeApproval tells the approval receivers that the request no longer
// awaits approval (outcome says why: approved, rejected, expired): a
// resolve of the request's notification, in its group, so that PagerDuty
// resolves the incident the request opened (the same dedup_key) and
// Slack's message loses its buttons and says the outcome in its thread.
func (a *Alertd) closeApproval(ctx context.Context, req *actionRequest, outcome string) {
	receivers := a.approvalReceivers(req.Action)
	if len(receivers) == 0 {
		return
	}
	now := a.opts.Now()
	al := amalert.New(model.Alert{Labels: approvalLabels(req), StartsAt: req.CreatedAt, EndsAt: now, Annotations: model.LabelSet{
		"summary":     model.LabelValue(fmt.Sprintf("Action %q (request %s, by %s) no longer awaits approval", req.Action, req.ID, req.Trigger)),
		"description": model.LabelValue(outcome),
	}}, now, false)
	extra := map[string]string{notice.ExtraEvent: notice.EventResolve, notice.ExtraActionRequest: req.ID, notice.ExtraGroupKey: "action/" + req.ID}
	for _, r := range receivers {
		if err := a.notify.SendToReceiver(ctx, r, "approval/"+req.ID+"/"+r+"/closed", []*amalert.Alert{al}, extra); err != nil {
			a.logger.Error("Couldn't close an action's approval request", "action", req.Action, "request", req.ID, "receiver", r, "err", err)
		}
	}
}

// approveAction approves a request awaiting approval and sends it; the
// API and the Slack button call it.
func (a *Alertd) approveAction(id, by string) error {
	req, _, s, err := a.actions.decide(id, by, true)
	if err != nil {
		return err
	}
	if err := a.sendAction(s, a.opts.Now()); err != nil {
		return err
	}
	a.actions.save(a.opts.Now())
	a.logger.Info("Action approved", "action", req.Action, "request", id, "by", by)
	a.closeApproval(a.ctx, req, "approved"+decidedBy(by))
	return nil
}

// rejectAction rejects a request awaiting approval.
func (a *Alertd) rejectAction(id, by string) error {
	req, d, _, err := a.actions.decide(id, by, false)
	if err != nil {
		return err
	}
	a.store.note(req.fingerprints(), d)
	a.actions.save(a.opts.Now())
	a.logger.Info("Action rejected", "action", req.Action, "request", id, "by", by)
	a.closeApproval(a.ctx, req, "rejected"+decidedBy(by))
	return nil
}

// decidedBy is " by <who>", or nothing when nobody is named.
func decidedBy(by string) string {
	if by == "" {
		return ""
	}
	return " by " + by
}

// tickActions runs the schedules, expires approvals and verifies the
// actions sent, as time passes.
//
// A schedule's due slot is reported run (scheduleRan) only once its action
// is in the outbox, or settled otherwise, so that a crash or a refused
// enqueue leaves it due rather than lost; its key is deterministic per
// slot, so a run repeated after a crash that followed the enqueue is not
// sent twice.
func (a *Alertd) tickActions(ctx context.Context, now time.Time) {
	for name, slot := range a.actions.dueSchedules(now) {
		var labels map[string]string
		for _, c := range a.actions.configs() {
			if c.Name == name {
				labels = maps.Clone(c.Trigger.Schedule.Labels)
			}
		}
		if labels == nil {
			labels = map[string]string{}
		}
		key := fmt.Sprintf("action/%s/schedule/%d", name, slot.Unix())
		err := a.triggerAction(ctx, name, triggerSchedule, labels, nil, key)
		var ee *enqueueError
		if errors.As(err, &ee) {
			rt, changed := a.actions.scheduleRefused(name, err, now)
			log := a.logger.Debug
			if changed {
				log = a.logger.Warn
			}
			log("Scheduled action not sent, will retry later", "action", name, "slot", slot, "attempts", rt.attempts, "err", err)
			continue
		}
		if err != nil {
			a.logger.Warn("Scheduled action not sent", "action", name, "err", err)
		}
		a.actions.scheduleRan(name, slot, now)
	}
	a.retryAlertActions(ctx, now)
	a.retryRollbacks(ctx, now)
	for _, req := range a.actions.expire(now) {
		a.store.note(req.fingerprints(), Decision{Time: now, Stage: "action", Action: "expired",
			Reason: fmt.Sprintf("action %q (request %s) expired: %s", req.Action, req.ID, req.Reason)})
		a.closeApproval(ctx, req, "expired: "+req.Reason)
	}
	for _, req := range a.actions.verifying() {
		a.verifyAction(ctx, req, now)
	}
}

// verifyAction settles a request's verification once its alerts resolved
// or its time is up; on failure it escalates the incident or runs the
// configured action.
func (a *Alertd) verifyAction(ctx context.Context, req *actionRequest, now time.Time) {
	by := *req.VerifyBy
	at := now
	if at.After(by) {
		at = by
	}
	resolved := true
	var firing []*Alert
	for _, fp := range req.fingerprints() {
		if al, ok := a.store.get(fp); ok && !al.ResolvedAt(at) {
			resolved = false
			firing = append(firing, al)
		}
	}
	within := by.Sub(*req.SentAt)
	switch act.VerifyOutcome(*req.SentAt, within, resolved, now) {
	case act.VerifyResolved:
		a.actions.settle(req.ID, verifyResolved, "", now)
		a.store.note(req.fingerprints(), Decision{Time: now, Stage: "action", Action: "verified",
			Reason: fmt.Sprintf("action %q (request %s) verified: the alert resolved within %s", req.Action, req.ID, model.Duration(within))})
	case act.VerifyFailed:
		why := fmt.Sprintf("action %q (request %s) failed verification: the alert still fires %s after it was sent", req.Action, req.ID, model.Duration(within))
		var followUp string
		if name, ok := strings.CutPrefix(req.OnFailure, "run "); ok {
			var ran bool
			if followUp, ran = a.runRollback(ctx, req, name, why, nil, now); !ran {
				return
			}
		} else {
			followUp = "escalated the incident"
			if a.escalateIncident == nil {
				followUp = "no escalation is configured to take it"
			} else if err := a.escalateIncident(ctx, firing, why); err != nil {
				followUp = fmt.Sprintf("couldn't escalate the incident: %v", err)
			}
		}
		a.failedVerification(req, why, followUp, now)
	}
}

// failedVerification settles a request's verification as failed, with
// what was done about it. The rollback it ran may have been delivered, and
// the delivery recorded, meanwhile: the decision goes before it, so that
// the history reads the same whichever came first.
func (a *Alertd) failedVerification(req *actionRequest, why, followUp string, now time.Time) {
	a.actions.settle(req.ID, verifyFailed, followUp, now)
	a.store.noteInOrder(req.fingerprints(), Decision{Time: now, Stage: "action", Action: "verification_failed", Reason: why + "; " + followUp})
	a.logger.Warn("Action failed verification", "action", req.Action, "request", req.ID, "follow_up", followUp)
}

// runRollback triggers the action a request runs when it fails
// verification (on_failure: <name>), with a key of its own per request;
// rt is its retry, nil at the first attempt. It returns the follow-up to
// settle the verification with, and ran false if the outbox refused the
// rollback: the rollback is then kept to retry (rollbackRefused), in the
// state file, and the verification stays pending until the rollback is in
// the outbox or given up (retryRollbacks), so that neither a full disk
// nor a restart meanwhile loses it.
func (a *Alertd) runRollback(ctx context.Context, req *actionRequest, name, why string, rt *retry, now time.Time) (followUp string, ran bool) {
	key := "action/" + name + "/rollback/" + req.ID
	// A reload or a restart removed its action since the request was
	// made, or since the outbox refused it: nothing to run. A retry is
	// given up, uncounted, as the retries of a removed action's alerts
	// and schedules are dropped. Reloads run on the loop's goroutine, as
	// this does: none comes in between.
	if !a.actions.configured(name) {
		given := ""
		if rt != nil {
			given = fmt.Sprintf("given up after %d refusals of the outbox: ", rt.attempts)
		}
		return fmt.Sprintf("couldn't run %q: %s%v %q (no longer configured)", name, given, errNoAction, name), true
	}
	if rt != nil {
		a.actions.enqueueRetries.WithLabelValues(name, triggerRollback).Inc()
	}
	rb, d, s, fresh, err := a.actions.trigger(now, name, triggerRollback, req.Labels, req.Alerts, key)
	if err != nil {
		return fmt.Sprintf("couldn't run %q: %v", name, err), true
	}
	if fresh {
		if s == nil {
			// Its delivery may be recorded already, if the outbox held
			// its key (already_sent).
			a.store.noteInOrder(rb.fingerprints(), d)
		} else if err := a.actions.send(s); err != nil {
			again, changed := a.actions.rollbackRefused(req.ID, name, key, why, err, now)
			if rt == nil {
				// The decision, then its failure, as for a trigger;
				// a retry records nothing but a new error.
				a.store.note(s.alerts, s.d)
			}
			if changed {
				a.store.note(s.alerts, Decision{Time: now, Stage: "action", Action: "failed",
					Reason: fmt.Sprintf("%v; retried, the verification of request %s pending until the outbox takes it", err, req.ID)})
				a.logger.Warn("Rollback not sent, will retry later", "action", name, "request", req.ID, "attempts", again.attempts, "err", err)
			} else {
				a.logger.Debug("Rollback not sent, will retry later", "action", name, "request", req.ID, "attempts", again.attempts, "err", err)
			}
			a.actions.save(now)
			return "", false
		} else {
			d = s.d
			if rt != nil && s.dropped == nil {
				d.Reason += fmt.Sprintf(", after %d refusals of the outbox", rt.attempts)
			}
			// Its delivery may be recorded already.
			a.store.noteInOrder(s.alerts, d)
		}
		a.actions.save(now)
		a.logger.Info("Action triggered", "action", name, "trigger", triggerRollback, "request", rb.ID, "state", rb.State)
		if rb.State == stateAwaitingApproval {
			a.requestApproval(ctx, rb)
		}
	}
	switch {
	case rb.State == stateRefused || rb.State == stateRejected || rb.State == stateExpired:
		return fmt.Sprintf("couldn't run %q: %v: %s", name, errActionRefused, rb.Reason), true
	case rt != nil:
		return fmt.Sprintf("ran %q, after %d refusals of the outbox", name, rt.attempts), true
	}
	return fmt.Sprintf("ran %q", name), true
}

// retryRollbacks tries again the rollbacks the outbox refused (runRollback)
// and settles the verification of their requests once one is in the
// outbox; one retried for the outbox's max age is given up, and the
// verification settled saying so.
func (a *Alertd) retryRollbacks(ctx context.Context, now time.Time) {
	due, givenUp := a.actions.dueRollbacks(now)
	for _, rt := range givenUp {
		req, ok := a.actions.get(rt.request)
		if !ok {
			a.actions.dropRollback(rt.request)
			continue
		}
		a.logger.Error("Gave up on an action the outbox refused", "action", rt.action, "key", rt.key, "attempts", rt.attempts, "err", rt.err)
		a.failedVerification(req, rt.why, fmt.Sprintf("couldn't run %q: given up after %d refusals of the outbox in %s: %s",
			rt.action, rt.attempts, model.Duration(now.Sub(rt.since)), rt.err), now)
	}
	for _, rt := range due {
		req, ok := a.actions.get(rt.request)
		if !ok || req.Verification != verifyPending {
			a.actions.dropRollback(rt.request)
			continue
		}
		if followUp, ran := a.runRollback(ctx, req, rt.action, rt.why, &rt, now); ran {
			a.failedVerification(req, rt.why, followUp, now)
		}
	}
}
