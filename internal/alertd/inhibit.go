package alertd

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/inhibit"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// inhibitor is the "inhibit" stage: Alertmanager's inhibit_rules. An alert
// that a rule's target matchers select is suppressed while another alert
// that its source matchers select fires with the same values of the rule's
// equal labels (a label missing from both is equal). As in Alertmanager,
// an alert that both sides select is not inhibited by another that both
// sides select, and a source inhibits whether or not it is suppressed
// itself. The rules are built by Alertmanager's own inhibit package, the
// deprecated source_match and target_match forms included.
//
// The stage reads the store's alerts: its methods run with the store's
// lock held, as all stages do.
type inhibitor struct {
	store *store
	rules []*inhibit.InhibitRule
	names []string            // the rules' names, else "#<index>"
	equal [][]model.LabelName // each rule's equal labels, sorted
	// sources indexes, per rule, the alerts its source matchers select by
	// their values of its equal labels; built again when the store's
	// alerts changed (gen).
	sources []map[string][]*Alert
	gen     uint64
	built   bool
}

func newInhibitor(s *store) *inhibitor { return &inhibitor{store: s} }

// Name implements Stage.
func (*inhibitor) Name() string { return "inhibit" }

// operatorDecision implements operatorStage: an inhibition is configured,
// and an escalation does not lift it (a target that escalates out of its
// target matchers is no longer inhibited anyway).
func (*inhibitor) operatorDecision() {}

// set takes the rules of a (re)loaded configuration.
func (in *inhibitor) set(rules []*alertconfig.InhibitRule) {
	in.store.mu.Lock()
	defer in.store.mu.Unlock()
	in.rules, in.names, in.equal = nil, nil, nil
	for i, r := range rules {
		ir := inhibit.NewInhibitRule(r.InhibitRule)
		in.rules = append(in.rules, ir)
		equal := slices.Collect(maps.Keys(ir.Equal))
		slices.Sort(equal)
		in.equal = append(in.equal, equal)
		name := r.Name
		if name == "" {
			name = "#" + strconv.Itoa(i)
		}
		in.names = append(in.names, name)
	}
	in.built = false
}

// active reports whether any rule is configured.
func (in *inhibitor) active() bool { return len(in.rules) > 0 }

// isSource reports whether a rule's source matchers select a.
func (in *inhibitor) isSource(a *Alert) bool {
	for _, r := range in.rules {
		if r.SourceMatchers.Matches(a.Labels) {
			return true
		}
	}
	return false
}

// Process implements Stage.
func (in *inhibitor) Process(_ context.Context, now time.Time, a *Alert) Decision {
	src, rule := in.source(now, a)
	if src == nil {
		return Decision{}
	}
	a.Suppressed = true
	return Decision{Action: "suppressed", Reason: fmt.Sprintf("inhibited by %s %s, firing, under inhibit rule %s", src.Labels[model.AlertNameLabel], src.Labels, in.names[rule])}
}

// source returns the first alert that inhibits a at now, and the index of
// the rule it does so under; nil when none does.
func (in *inhibitor) source(now time.Time, a *Alert) (*Alert, int) {
	for i, r := range in.rules {
		if !r.TargetMatchers.Matches(a.Labels) {
			continue
		}
		bothSides := r.SourceMatchers.Matches(a.Labels)
		for _, src := range in.index()[i][equalKey(in.equal[i], a.Labels)] {
			if src.Fingerprint == a.Fingerprint || src.ResolvedAt(now) || (bothSides && r.TargetMatchers.Matches(src.Labels)) {
				continue
			}
			return src, i
		}
	}
	return nil, -1
}

// index returns the sources by rule and equal labels, built again when the
// store's alerts changed.
func (in *inhibitor) index() []map[string][]*Alert {
	if in.built && in.gen == in.store.gen {
		return in.sources
	}
	in.sources = make([]map[string][]*Alert, len(in.rules))
	for i, r := range in.rules {
		m := map[string][]*Alert{}
		for _, a := range in.store.alerts {
			if r.SourceMatchers.Matches(a.Labels) {
				k := equalKey(in.equal[i], a.Labels)
				m[k] = append(m[k], a)
			}
		}
		in.sources[i] = m
	}
	in.gen, in.built = in.store.gen, true
	return in.sources
}

// equalKey is ls's values of the equal labels, each with its length.
func equalKey(equal []model.LabelName, ls model.LabelSet) string {
	var b strings.Builder
	for _, n := range equal {
		v := ls[n]
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(string(v))
	}
	return b.String()
}
