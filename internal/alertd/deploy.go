package alertd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"

	"github.com/modelmon/modelmon/classify"
	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/rules"
)

// Outcomes and kinds of deployments.
const (
	outcomeSuccess  = "success"
	outcomeFailure  = "failure"
	outcomeRollback = "rollback"
	kindDeploy      = "deploy"
	kindRollback    = "rollback"

	// Sources of deployments: posted by CI, or seen in modelmon_model_info.
	deploySourceAPI       = "api"
	deploySourceModelInfo = "model_info"
)

var (
	outcomes      = []string{outcomeSuccess, outcomeFailure, outcomeRollback}
	kinds         = []string{kindDeploy, kindRollback}
	deploySources = []string{deploySourceAPI, deploySourceModelInfo}
)

// deployment is one deploy (or rollback) of a model version. Every event is
// kept with all its fields, append-only: deployment frequency, lead time
// for changes, change failure rate and time to restore are computed from
// them.
type deployment struct {
	ID          string     `json:"id"`
	Model       string     `json:"model"`
	Version     string     `json:"version"`
	Environment string     `json:"environment,omitempty"`
	CommitTime  *time.Time `json:"commit_time,omitempty"`
	Time        time.Time  `json:"time"`
	Outcome     string     `json:"outcome"`
	Kind        string     `json:"kind"`
	Source      string     `json:"source"`
	RecordedAt  time.Time  `json:"recorded_at"`
	// PreviousVersions are the versions modelmon_model_info showed before
	// (source model_info only).
	PreviousVersions []string `json:"previous_versions,omitempty"`
}

// deployments is the deployment log and the deploy stage of the pipeline:
// for hold after a model's deploy, its alerts (of the configured
// categories) are kept from notifications; the pipeline releases those that
// still fire when the hold ends. The log is a JSON Lines file under
// --storage.path, only ever appended to; the versions last seen in
// modelmon_model_info are kept beside it, so a restart does not take the
// versions it finds for a deploy.
type deployments struct {
	// wmu is taken before mu and held through a write: the log's lines,
	// and the versions' file, are written in turn without mu, which the
	// stage takes for every alert, so that a slow disk does not stall the
	// pipeline. An event is indexed once its line is written.
	wmu          sync.Mutex
	mu           sync.Mutex
	path         string
	versionsFile *stateFile
	events       []deployment
	// byModel indexes events by model.
	byModel map[string][]int
	// versions are the versions of each model modelmon_model_info showed
	// last, sorted.
	versions   map[string][]string
	cfg        alertconfig.DeploySuppression
	classified bool
	// observations counts the calls of observe, for tests.
	observations int
	recorded     *prometheus.CounterVec
	logger       *slog.Logger
}

func newDeployments(storage string, reg prometheus.Registerer, logger *slog.Logger) (*deployments, error) {
	d := &deployments{
		path:         filepath.Join(storage, "deployments.jsonl"),
		versionsFile: newStateFile(filepath.Join(storage, "model_versions.json")),
		byModel:      map[string][]int{},
		versions:     map[string][]string{},
		logger:       logger,
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alertd_deployments_total",
			Help: "The total number of deployments recorded, by source (api: posted; model_info: a new version in modelmon_model_info).",
		}, []string{"source"}),
	}
	for _, s := range deploySources {
		d.recorded.WithLabelValues(s)
	}
	if err := d.load(); err != nil {
		return nil, err
	}
	if _, err := readJSON(d.versionsFile.path, &d.versions); err != nil {
		return nil, fmt.Errorf("couldn't read model versions: %w", err)
	}
	reg.MustRegister(d.recorded)
	return d, nil
}

// load reads the log. A last line cut short (alertd stopped while writing
// it) is dropped from the file; any other bad line is an error.
func (d *deployments) load() error {
	b, err := os.ReadFile(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("couldn't read deployments: %w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev deployment
		if err := json.Unmarshal(line, &ev); err != nil {
			if i == len(lines)-1 {
				d.logger.Warn("Dropping a deployment record cut short", "file", d.path, "line", i+1, "err", err)
				if err := os.Truncate(d.path, int64(len(b)-len(line))); err != nil {
					return fmt.Errorf("couldn't repair deployments: %w", err)
				}
				break
			}
			return fmt.Errorf("couldn't read deployments: %s:%d: %w", d.path, i+1, err)
		}
		d.index(ev)
	}
	return nil
}

// index adds an event to the in-memory log. Called with d.mu held.
func (d *deployments) index(ev deployment) {
	d.byModel[ev.Model] = append(d.byModel[ev.Model], len(d.events))
	d.events = append(d.events, ev)
}

// appendLog writes an event to the log. Called with d.wmu held, not d.mu:
// the caller indexes the event once it is written.
func (d *deployments) appendLog(ev deployment) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("couldn't record deployment: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		_, err = f.Write(append(b, '\n'))
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			// Cut off what a failed write left (part of a line, on a full
			// disk): the next line would follow it on the same line, which
			// no start could read back.
			_ = f.Truncate(fi.Size())
		} else if fi.Size() == 0 {
			// The log's first line, likely in a file just created: its
			// directory entry must last too.
			syncDir(filepath.Dir(d.path))
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("couldn't record deployment: %w", err)
	}
	return nil
}

// record adds a deployment to the log.
func (d *deployments) record(ev deployment) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err := d.appendLog(ev); err != nil {
		return err
	}
	d.written(ev)
	return nil
}

// written indexes an event written to the log. Called with d.wmu held.
func (d *deployments) written(ev deployment) {
	d.mu.Lock()
	d.index(ev)
	d.mu.Unlock()
	d.recorded.WithLabelValues(ev.Source).Inc()
}

// set swaps in the configuration; classified says whether the classify
// stage runs, whose category annotation then decides the category.
func (d *deployments) set(c alertconfig.DeploySuppression, classified bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg, d.classified = c, classified
}

// list returns the deployments of a model ("": all), by time.
func (d *deployments) list(model string) []deployment {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []deployment{}
	for _, ev := range d.events {
		if model == "" || ev.Model == model {
			out = append(out, ev)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Name implements Stage.
func (d *deployments) Name() string { return "deploy" }

// Process implements Stage: an alert of a model deployed less than hold ago
// (a failed deploy does not count), of one of the categories, is
// suppressed until the hold ends. When both the deployment and the alert
// name an environment (its `environment` label), they must agree.
func (d *deployments) Process(_ context.Context, now time.Time, a *Alert) Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	hold := time.Duration(d.cfg.Hold)
	m := string(a.Labels[model.LabelName(d.cfg.ModelLabel)])
	if hold <= 0 || m == "" || a.ResolvedAt(now) || len(d.byModel[m]) == 0 {
		return Decision{}
	}
	if len(d.cfg.Categories) > 0 && !slices.Contains(d.cfg.Categories, d.category(a)) {
		return Decision{}
	}
	env := string(a.Labels["environment"])
	var last *deployment
	for _, i := range d.byModel[m] {
		ev := &d.events[i]
		if ev.Outcome == outcomeFailure || ev.Time.After(now) || (env != "" && ev.Environment != "" && ev.Environment != env) {
			continue
		}
		if last == nil || !ev.Time.Before(last.Time) {
			last = ev
		}
	}
	if last == nil || !now.Before(last.Time.Add(hold)) {
		return Decision{}
	}
	what := "deployed"
	if last.Kind == kindRollback {
		what = "rolled back to"
	}
	a.Suppressed = true
	return Decision{Action: "suppressed", Reason: fmt.Sprintf("model %q %s version %s at %s (%s); held until %s (deploy hold %s)",
		m, what, last.Version, last.Time.UTC().Format(time.RFC3339), last.Source, last.Time.Add(hold).UTC().Format(time.RFC3339), model.Duration(hold))}
}

// category is the alert's category: the classify stage's annotation when
// it runs, else the default from its labels. Called with d.mu held.
func (d *deployments) category(a *Alert) classify.Category {
	if c, ok := a.Annotations[annotationCategory]; ok && d.classified {
		return classify.Category(c)
	}
	ls := make(map[string]string, len(a.Labels))
	for k, v := range a.Labels {
		ls[string(k)] = string(v)
	}
	c, _ := classify.DefaultCategory(ls)
	return c
}

// modelInfoQuery gives the versions each model's sidecars report.
const modelInfoQuery = `max by (model, version) (modelmon_model_info)`

// observe takes the versions modelmon_model_info shows at now and records a
// deployment for each version of a model that was not there before. The
// first time a model is seen there is nothing to compare with; the versions
// seen are kept under --storage.path, so after a restart they are. A
// version the latest deployment of the model already names (CI posted it)
// is not recorded again, and a version going away (a rollout completing) is
// no deployment.
func (d *deployments) observe(now time.Time, vec promql.Vector) ([]deployment, error) {
	cur := map[string][]string{}
	for _, s := range vec {
		m, v := s.Metric.Get("model"), s.Metric.Get("version")
		if m != "" && v != "" {
			cur[m] = append(cur[m], v)
		}
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.mu.Lock()
	d.observations++
	var (
		todo, out []deployment
		changed   bool
		errs      []error
	)
	models := make([]string, 0, len(cur))
	for m := range cur {
		models = append(models, m)
	}
	slices.Sort(models)
	for _, m := range models {
		vs := cur[m]
		slices.Sort(vs)
		vs = slices.Compact(vs)
		old, known := d.versions[m]
		if known && slices.Equal(old, vs) {
			continue
		}
		d.versions[m] = vs
		changed = true
		if !known {
			continue
		}
		latest := ""
		if idx := d.byModel[m]; len(idx) > 0 {
			latest = d.events[idx[len(idx)-1]].Version
		}
		for _, v := range vs {
			if slices.Contains(old, v) || v == latest {
				continue
			}
			todo = append(todo, deployment{ID: newID(), Model: m, Version: v, Time: now, Outcome: outcomeSuccess, Kind: kindDeploy,
				Source: deploySourceModelInfo, RecordedAt: now, PreviousVersions: old})
			latest = v
		}
	}
	d.mu.Unlock()
	for _, ev := range todo {
		if err := d.appendLog(ev); err != nil {
			errs = append(errs, err)
			continue
		}
		d.written(ev)
		out = append(out, ev)
	}
	if changed {
		if err := d.versionsFile.save(&d.mu, func() any { return d.versions }); err != nil {
			errs = append(errs, fmt.Errorf("couldn't save model versions: %w", err))
		}
	}
	return out, errors.Join(errs...)
}

// watchModelInfo records the deployments modelmon_model_info shows, every
// evaluation interval, until ctx is done.
func (a *Alertd) watchModelInfo(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := a.opts.Now()
		// No rule's: its failure leaves the data source up (a partial
		// answer is logged so), and the versions are read again at the
		// next pass.
		vec, err := a.query(rules.WithAuxiliary(ctx, "deployment detection"), modelInfoQuery, now)
		if err != nil {
			a.logger.Debug("Couldn't read model versions", "err", err)
		} else {
			evs, err := a.deployments.observe(now, vec)
			if err != nil {
				a.logger.Error("Failed to record deployments", "err", err)
			}
			for _, ev := range evs {
				a.logger.Info("Model deployed", "model", ev.Model, "version", ev.Version, "previous_versions", ev.PreviousVersions)
			}
		}
		t.Reset(time.Duration(a.cfg.Load().Global.EvaluationInterval))
	}
}

// newID returns a random id for an API object.
func newID() string {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return hex.EncodeToString(id)
}

// deploymentRequest is the body of POST /api/v1/deployments.
type deploymentRequest struct {
	Model       string     `json:"model"`
	Version     string     `json:"version"`
	Environment string     `json:"environment"`
	CommitTime  *time.Time `json:"commit_time"`
	Time        *time.Time `json:"time"`
	Outcome     string     `json:"outcome"`
	Kind        string     `json:"kind"`
}

// postDeployment records a deployment CI reports.
func (a *Alertd) postDeployment(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var req deploymentRequest
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("couldn't parse deployment: %v", err), http.StatusBadRequest)
		return
	}
	now := a.opts.Now()
	ev := deployment{ID: newID(), Model: req.Model, Version: req.Version, Environment: req.Environment, CommitTime: req.CommitTime,
		Time: now, Outcome: req.Outcome, Kind: req.Kind, Source: deploySourceAPI, RecordedAt: now}
	if req.Time != nil {
		ev.Time = *req.Time
	}
	if ev.Outcome == "" {
		ev.Outcome = outcomeSuccess
	}
	if ev.Kind == "" {
		ev.Kind = kindDeploy
	}
	var msg string
	switch {
	case ev.Model == "":
		msg = `missing field "model"`
	case ev.Version == "":
		msg = `missing field "version"`
	case !slices.Contains(outcomes, ev.Outcome):
		msg = fmt.Sprintf("invalid outcome %q: want one of %v", ev.Outcome, outcomes)
	case !slices.Contains(kinds, ev.Kind):
		msg = fmt.Sprintf("invalid kind %q: want one of %v", ev.Kind, kinds)
	case ev.CommitTime != nil && ev.CommitTime.After(ev.Time):
		msg = "commit_time must not be after time"
	}
	if msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	if err := a.deployments.record(ev); err != nil {
		a.logger.Error("Failed to record a deployment", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	respond(w, ev)
}

// getDeployments lists the deployments, by time; ?model= filters.
func (a *Alertd) getDeployments(w http.ResponseWriter, r *http.Request) {
	respond(w, a.deployments.list(r.URL.Query().Get("model")))
}
