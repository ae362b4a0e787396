package alertd

import (
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// pipeline is the alert store and its stages, with their state under one
// directory. alertd runs one; a replay runs one on a scratch directory.
type pipeline struct {
	store      *store
	classifier *classifier
	silencer   *silencer
	hold       holdStage
	flap       *flapStage
}

// newPipeline builds the pipeline with its state under dir. put receives
// what is to be notified, route names the receivers of an alert.
func newPipeline(dir string, reg prometheus.Registerer, put func(...*amalert.Alert) error, route func(model.LabelSet) []string, retention time.Duration, now func() time.Time) (*pipeline, error) {
	p := &pipeline{}
	var err error
	if p.silencer, err = newSilencer(silencesPath(dir)); err != nil {
		return nil, err
	}
	if p.flap, err = newFlapStage(flapPath(dir)); err != nil {
		return nil, err
	}
	p.store = newStore(reg, put, route, retention, now)
	if p.classifier, err = newClassifier(nil, classifierPath(dir), reg); err != nil {
		return nil, err
	}
	p.classifier.flaps = p.flap.count
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
	var stages []Stage
	if cfg.Classification != nil {
		stages = append(stages, p.classifier)
	}
	p.hold.set(time.Duration(cfg.Suppression.MinFiringDuration))
	p.flap.set(cfg.Suppression.Flapping)
	p.store.setStages(append(stages, p.silencer, &p.hold, p.flap))
	return nil
}
