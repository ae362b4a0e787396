package alertd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/classify"
	"github.com/modelmon/modelmon/internal/alertconfig"
)

// pipeline is the alert store and its stages, with their state under one
// directory. alertd runs one; a replay runs another on a scratch
// directory, so both decide alike.
type pipeline struct {
	store *store
	// classifier is the classify stage, active when the configuration has
	// a classification section; it keeps learning from feedback either way.
	classifier  *classifier
	learned     learnedStage
	silencer    *silencer
	inhibitor   *inhibitor
	maintenance *maintenance
	deployments *deployments
	// suppressions is the "rule" stage applying suppression rules proposed
	// from operators' verdicts.
	suppressions *suppressions
	hold         holdStage
	flap         *flapStage
}

// newPipeline builds the pipeline with its state under dir. put receives
// what is to be notified, route names the receivers of an alert.
func newPipeline(dir string, reg prometheus.Registerer, logger *slog.Logger, put func(...*amalert.Alert) error, route func(model.LabelSet) []string, retention time.Duration, now func() time.Time) (*pipeline, error) {
	p := &pipeline{}
	var err error
	if p.silencer, err = newSilencer(silencesPath(dir)); err != nil {
		return nil, err
	}
	if p.flap, err = newFlapStage(flapPath(dir), logger.With("component", "flap")); err != nil {
		return nil, err
	}
	if p.maintenance, err = newMaintenance(maintenancePath(dir)); err != nil {
		return nil, err
	}
	if p.deployments, err = newDeployments(dir, reg, logger.With("component", "deployments")); err != nil {
		return nil, err
	}
	if p.suppressions, err = newSuppressions(suppressionsPath(dir)); err != nil {
		return nil, err
	}
	p.store = newStore(reg, put, route, retention, now)
	p.inhibitor = newInhibitor(p.store)
	p.store.inhibitor = p.inhibitor
	if p.classifier, err = newClassifier(nil, classifierPath(dir), reg); err != nil {
		return nil, err
	}
	p.classifier.flaps = p.flap.count
	p.store.saves = append(p.store.saves, p.flap.save)
	return p, nil
}

// apply configures the stages and sets their order.
func (p *pipeline) apply(cfg *alertconfig.Config) error {
	if err := p.classifier.setRules(classificationRules(cfg)); err != nil {
		return err
	}
	if err := p.silencer.setConfig(cfg.Silences); err != nil {
		return err
	}
	if err := p.maintenance.setConfig(cfg.MaintenanceWindows); err != nil {
		return err
	}
	// The classifier comes first: learned suppression acts on its
	// false-positive probability, and the deploy stage on its category.
	var stages []Stage
	if cfg.Classification != nil {
		stages = append(stages, p.classifier, &p.learned)
	}
	p.inhibitor.set(cfg.InhibitRules)
	if p.inhibitor.active() {
		stages = append(stages, p.inhibitor)
	}
	p.learned.set(cfg.Suppression.Learned)
	p.deployments.set(cfg.Suppression.Deploy, cfg.Classification != nil)
	p.hold.set(time.Duration(cfg.Suppression.MinFiringDuration))
	p.flap.set(cfg.Suppression.Flapping)
	// What an upstream Alertmanager silences or inhibits comes before
	// alertd's own silences.
	p.store.setStages(append(stages, upstreamStage{}, p.silencer, p.suppressions, p.maintenance, p.deployments, &p.hold, p.flap))
	return nil
}

// suppressBegun suppresses the firing alerts that a silence or maintenance
// window selects from now on: a silence created ahead of its start, or one
// of the configuration's, begins as time passes, and so does a window's time
// interval. (A silence that starts as it is created suppresses what fires at
// once, store.resuppress; an alert that arrives later meets it in the
// stages.) The notifier would mute such an alert at its next flush anyway;
// marking it suppressed also records why in its history and quiets its
// incident's escalation chain, which asks the store (store.allSuppressed).
// Silences go first, as in the pipeline. alertd runs it with each release;
// a replay at each evaluation and at each time a silence or window begins
// or ends.
func (p *pipeline) suppressBegun(ctx context.Context, now time.Time) {
	p.store.suppressWith(ctx, now, p.silencer, p.maintenance)
}

// classificationRules returns the configured classification rules.
func classificationRules(cfg *alertconfig.Config) []classify.Rule {
	if cfg.Classification == nil {
		return nil
	}
	return cfg.Classification.Rules
}

// classifierRulesValid checks the configured classification rules, so a bad
// one stops start-up with its error.
func (a *Alertd) classifierRulesValid(cfg *alertconfig.Config) error {
	if _, err := classify.New(classificationRules(cfg), classify.Options{}); err != nil {
		return fmt.Errorf("classification: %w", err)
	}
	return nil
}
