package alertd

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/rules"
)

// datasourceDownAlert is the name of alertd's alert about its data source.
const datasourceDownAlert = "AlertdDatasourceDown"

// checkDatasource runs every few seconds. While the remote data source cannot
// be queried, or answers only part of the data (a Thanos store or a
// VictoriaMetrics storage node missing), rules cannot tell whether their
// alerts still hold; instead of letting those alerts time out into a false
// "resolved", alertd keeps them firing (recorded in their history) and
// raises its own alert. When the data source answers again, in full, the
// rules take over, and the own alert resolves.
func (a *Alertd) checkDatasource(now time.Time) {
	if a.remote == nil {
		return
	}
	up, since, _, err := a.remote.Status()
	own := &Alert{Value: 0}
	own.Labels = model.LabelSet{
		model.AlertNameLabel: datasourceDownAlert,
		"severity":           "critical",
		"category":           "availability",
		"datasource":         model.LabelValue(redactURL(a.datasourceURL(a.cfg.Load()))),
	}
	own.StartsAt = since
	own.GeneratorURL = a.opts.ExternalURL.String() + "/api/v1/rules"
	ctx := context.Background()
	if up {
		// Resolve the own alert once, if it was firing.
		for _, al := range a.store.active(SourceAlertd, now) {
			if al.Labels[model.AlertNameLabel] == datasourceDownAlert {
				own.StartsAt = al.StartsAt
				own.EndsAt = now
				_ = a.store.receive(ctx, now, SourceAlertd, []*Alert{own}, "the data source answers again")
			}
		}
		return
	}
	hold := 4 * max(a.opts.ResendDelay, time.Duration(a.cfg.Load().Global.EvaluationInterval))
	reason := rules.DownReason(err)
	why, until := "the data source does not answer", "it answers"
	if reason == rules.ReasonPartialResponse {
		// A Thanos store or VictoriaMetrics storage node is missing: the
		// data source answers, but rules would fire or resolve on part of
		// the data.
		why, until = "the data source answers only part of the data", "it answers in full"
	}
	own.Annotations = model.LabelSet{
		"summary":     "alertd cannot query its data source",
		"description": model.LabelValue(fmt.Sprintf("Queries to %s fail since %s: %v. Rule alerts are held in their last state until %s.", redactURL(a.datasourceURL(a.cfg.Load())), since.UTC().Format(time.RFC3339), err, until)),
	}
	own.EndsAt = now.Add(hold)
	if err := a.store.receive(ctx, now, SourceAlertd, []*Alert{own}, why); err != nil {
		a.logger.Error("Failed to raise the data source alert", "err", err)
	}
	held := a.store.active(SourceRule, now)
	if len(held) == 0 {
		return
	}
	fps := make([]model.Fingerprint, 0, len(held))
	for _, al := range held {
		al.EndsAt = now.Add(hold)
		fps = append(fps, al.Fingerprint)
	}
	a.metrics.datasourceHeld.WithLabelValues(reason).Add(float64(len(held)))
	if err := a.store.receive(ctx, now, SourceRule, held, ""); err != nil {
		a.logger.Error("Failed to hold rule alerts", "err", err)
	}
	a.store.noteOnce(fps, Decision{Time: now, Stage: "datasource", Action: "held", Reason: fmt.Sprintf("kept firing: %s since %s (%v)", why, since.UTC().Format(time.RFC3339), err)})
}
