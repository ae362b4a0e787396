package alertd

import (
	"fmt"
	"maps"
	"time"

	"github.com/prometheus/common/model"
)

// operatorStage is implemented by the stages whose suppression is an
// operator's explicit decision (silences, maintenance windows): an
// escalation does not release what they hold.
type operatorStage interface {
	operatorDecision()
}

// held is what the pipeline remembers of an alert's suppression in its
// current firing episode.
type held struct {
	// set is true once a stage other than an operator's suppressed the
	// alert; priority and severity are the alert's then.
	set                bool
	priority, severity string
	// escalated says why the alert was released on escalation; stages no
	// longer hold it until it resolves.
	escalated string
}

// severityLabel is the label whose value ranks an alert's severity.
const severityLabel = "severity"

// The ranks of priorities and severities, most urgent highest; 0 is an
// unknown value, which never escalates.
var (
	priorityRank = map[string]int{"low": 1, "medium": 2, "high": 3, "critical": 4}
	severityRank = map[string]int{"info": 1, "warning": 2, "error": 3, "critical": 4}
	severities   = []string{"", "info", "warning", "error", "critical"}
)

// escalation says why a suppressed alert escalated since a stage first
// suppressed it, or "" if it did not: its classified priority rose above
// the one it had then, or an alert with the same labels but severity fires
// at a higher severity than any of the family had when first suppressed.
// Called with s.mu held.
func (s *store) escalation(a *Alert, now time.Time) string {
	from, to := a.held.priority, string(a.Annotations[annotationPriority])
	if r := priorityRank[from]; r > 0 && priorityRank[to] > r {
		return fmt.Sprintf("escalated from %s to %s (priority)", from, to)
	}
	base, top := 0, 0
	var by *Alert
	for fp := range s.families[familyKey(a.Labels)] {
		m, ok := s.alerts[fp]
		if !ok || m.ResolvedAt(now) {
			continue
		}
		if r := severityRank[m.held.severity]; m.held.set && r > 0 && (base == 0 || r < base) {
			base = r
		}
		if r := severityRank[string(m.Labels[severityLabel])]; r > top {
			top, by = r, m
		}
	}
	if base == 0 || top <= base {
		return ""
	}
	why := fmt.Sprintf("escalated from %s to %s (severity)", severities[base], severities[top])
	if by != a {
		why += fmt.Sprintf(": %s fires", by.Labels)
	}
	return why
}

// familyKey identifies the alerts with the same labels but severity.
func familyKey(ls model.LabelSet) model.Fingerprint {
	if _, ok := ls[severityLabel]; !ok {
		return ls.Fingerprint()
	}
	c := maps.Clone(ls)
	delete(c, severityLabel)
	return c.Fingerprint()
}

// addFamily indexes a new alert by family. Called with s.mu held.
func (s *store) addFamily(a *Alert) {
	k := familyKey(a.Labels)
	f := s.families[k]
	if f == nil {
		f = map[model.Fingerprint]struct{}{}
		s.families[k] = f
	}
	f[a.Fingerprint] = struct{}{}
}

// removeFamily forgets a deleted alert. Called with s.mu held.
func (s *store) removeFamily(a *Alert) {
	k := familyKey(a.Labels)
	delete(s.families[k], a.Fingerprint)
	if len(s.families[k]) == 0 {
		delete(s.families, k)
	}
}
