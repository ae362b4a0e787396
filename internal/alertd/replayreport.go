package alertd

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// ReplayComparison sets two replays of the same range side by side.
type ReplayComparison struct {
	A *ReplayResult `json:"a"`
	B *ReplayResult `json:"b,omitempty"`
	// Changes are the firings whose outcome differs between A and B (a
	// firing only one of them has counts as "none" in the other), in
	// time order.
	Changes []ReplayChange `json:"changes,omitempty"`
	// EscalationChanges are the escalation steps that differ between A
	// and B, in the same manner.
	EscalationChanges []ReplayEscalationChange `json:"escalation_changes,omitempty"`
}

// ReplayChange is one firing whose outcome differs between two replays.
type ReplayChange struct {
	Fingerprint string    `json:"fingerprint"`
	Alert       string    `json:"alert"`
	FiredAt     time.Time `json:"fired_at"`
	A           string    `json:"a"`
	B           string    `json:"b"`
}

// ReplayEscalationChange is an escalation step of one incident at one time
// that differs between two replays: A and B say whom it notified (or which
// action it ran), "none" where a replay has no such step.
type ReplayEscalationChange struct {
	Incident string    `json:"incident"`
	At       time.Time `json:"at"`
	Event    string    `json:"event"`
	A        string    `json:"a"`
	B        string    `json:"b"`
}

// outcomeNone is the outcome of a firing a replay does not have.
const outcomeNone = "none"

// CompareReplays matches the firings of a and b by alert and time fired.
func CompareReplays(a, b *ReplayResult) *ReplayComparison {
	c := &ReplayComparison{A: a, B: b}
	if b == nil {
		return c
	}
	type key struct {
		fp string
		t  int64
	}
	describe := func(f *ReplayFiring) string {
		if f.Outcome == OutcomeSuppressed {
			return f.Outcome + " (" + f.SuppressedBy + ")"
		}
		return f.Outcome
	}
	diffBy(a.Firings, b.Firings, func(f *ReplayFiring) key { return key{f.Fingerprint, f.FiredAt.UnixMilli()} }, describe,
		func(f *ReplayFiring, oa, ob string) {
			c.Changes = append(c.Changes, ReplayChange{Fingerprint: f.Fingerprint, Alert: f.Labels.String(), FiredAt: f.FiredAt, A: oa, B: ob})
		})
	sort.Slice(c.Changes, func(i, j int) bool {
		x, y := c.Changes[i], c.Changes[j]
		if !x.FiredAt.Equal(y.FiredAt) {
			return x.FiredAt.Before(y.FiredAt)
		}
		return x.Fingerprint < y.Fingerprint
	})
	c.EscalationChanges = compareEscalations(a.Escalations, b.Escalations)
	return c
}

// compareEscalations matches the escalation steps of a and b by incident,
// time and event (the nth of a kind with the nth), and returns those that
// differ.
func compareEscalations(a, b []ReplayEscalation) []ReplayEscalationChange {
	type key struct {
		incident, event string
		t               int64
	}
	describe := func(e *ReplayEscalation) string {
		if e.Action != "" {
			return e.Action
		}
		return fmt.Sprintf("level %d: %s", e.Level, strings.Join(e.Receivers, ", "))
	}
	var out []ReplayEscalationChange
	diffBy(a, b, func(e *ReplayEscalation) key { return key{e.Incident, e.Event, e.At.UnixMilli()} }, describe,
		func(e *ReplayEscalation, da, db string) {
			out = append(out, ReplayEscalationChange{Incident: e.Incident, At: e.At, Event: e.Event, A: da, B: db})
		})
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if !x.At.Equal(y.At) {
			return x.At.Before(y.At)
		}
		if x.Incident != y.Incident {
			return x.Incident < y.Incident
		}
		return x.Event < y.Event
	})
	return out
}

// nthKey is the key of the nth item of a replay with that key.
type nthKey[K comparable] struct {
	k K
	n int
}

// diffBy matches the items of a and b by their key, the nth with the nth,
// and calls changed with each whose description differs between the two,
// "none" for a side without it.
func diffBy[K comparable, T any](a, b []T, key func(*T) K, describe func(*T) string, changed func(x *T, da, db string)) {
	index := func(xs []T) map[nthKey[K]]*T {
		m := make(map[nthKey[K]]*T, len(xs))
		for i := range xs {
			k := nthKey[K]{k: key(&xs[i])}
			for m[k] != nil {
				k.n++
			}
			m[k] = &xs[i]
		}
		return m
	}
	ia, ib := index(a), index(b)
	desc := func(x *T) string {
		if x == nil {
			return outcomeNone
		}
		return describe(x)
	}
	seen := map[nthKey[K]]bool{}
	for _, m := range []map[nthKey[K]]*T{ia, ib} {
		for k, x := range m {
			if seen[k] {
				continue
			}
			seen[k] = true
			if da, db := desc(ia[k]), desc(ib[k]); da != db {
				changed(x, da, db)
			}
		}
	}
}

// maxTextChanges bounds the changes the text report lists.
const maxTextChanges = 50

// WriteText writes the comparison for people: the summary side by side,
// then the changed firings and, when either side escalates, the changed
// escalation steps.
func (c *ReplayComparison) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	results := []*ReplayResult{c.A}
	if c.B != nil {
		results = append(results, c.B)
	}
	row := func(name string, f func(r *ReplayResult) string) {
		fmt.Fprint(tw, name)
		for _, r := range results {
			fmt.Fprint(tw, "\t"+f(r))
		}
		fmt.Fprintln(tw)
	}
	row("config", func(r *ReplayResult) string { return r.Config })
	row("range", func(r *ReplayResult) string {
		return fmt.Sprintf("%s – %s, step %s", r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.Step)
	})
	row("evaluations", func(r *ReplayResult) string { return fmt.Sprint(r.Evaluations) })
	row("alerts", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Alerts) })
	row("firings", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Firings) })
	row("pages", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Pages) })
	row("pages per day", func(r *ReplayResult) string { return fmt.Sprintf("%.2f", r.Summary.PagesDay) })
	row("grouped into an incident", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Grouped) })
	row("suppressed", func(r *ReplayResult) string {
		n := 0
		for _, v := range r.Summary.Suppressed {
			n += v
		}
		return fmt.Sprint(n)
	})
	for _, k := range unionKeys(results, func(r *ReplayResult) map[string]int { return r.Summary.Suppressed }) {
		row("  by "+k, func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Suppressed[k]) })
	}
	row("unrouted", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Unrouted) })
	row("escalations", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Escalations) })
	for _, l := range unionKeys(results, func(r *ReplayResult) map[int]int { return r.Summary.EscalationsByLevel }) {
		row(fmt.Sprintf("  at level %d", l), func(r *ReplayResult) string { return fmt.Sprint(r.Summary.EscalationsByLevel[l]) })
	}
	if len(c.A.Acknowledgements) > 0 {
		// Both replays take the same acknowledgements.
		row("acknowledgements applied", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.AcknowledgementsApplied) })
		row("acknowledgements unmatched", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.AcknowledgementsUnmatched) })
		if c.A.Summary.AcknowledgementsRouteMissing > 0 || (c.B != nil && c.B.Summary.AcknowledgementsRouteMissing > 0) {
			row("  incident route gone, by alerts", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.AcknowledgementsRouteMissing) })
		}
	}
	if len(c.A.Silences) > 0 {
		// Both replays take the same silences; each its own alerts.
		row("silences applied", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.SilencesApplied) })
		row("silences unmatched", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.SilencesUnmatched) })
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c.B == nil {
		return nil
	}
	err := writeChanges(w, "firings changed outcome", "fired at\talert\tA\tB", len(c.Changes), func(i int) string {
		ch := c.Changes[i]
		return strings.Join([]string{ch.FiredAt.UTC().Format(time.RFC3339), ch.Alert, ch.A, ch.B}, "\t")
	})
	if err != nil || len(c.A.Escalations)+len(c.B.Escalations) == 0 {
		// Without escalations on either side there is nothing to compare.
		return err
	}
	return writeChanges(w, "escalation steps changed", "at\tincident\tevent\tA\tB", len(c.EscalationChanges), func(i int) string {
		ch := c.EscalationChanges[i]
		return strings.Join([]string{ch.At.UTC().Format(time.RFC3339), ch.Incident, ch.Event, ch.A, ch.B}, "\t")
	})
}

// unionKeys returns the keys of the map of each result, sorted.
func unionKeys[K cmp.Ordered](results []*ReplayResult, m func(*ReplayResult) map[K]int) []K {
	var out []K
	for _, r := range results {
		for k := range m(r) {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// writeChanges writes the number of changes and what changed, then up to
// maxTextChanges rows of them in a table under header.
func writeChanges(w io.Writer, what, header string, n int, row func(i int) string) error {
	fmt.Fprintf(w, "\n%d %s", n, what)
	if n == 0 {
		_, err := fmt.Fprintln(w, ".")
		return err
	}
	fmt.Fprintln(w, ":")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for i := range n {
		if i == maxTextChanges {
			fmt.Fprintf(tw, "… and %d more (see --output=json)\n", n-i)
			break
		}
		fmt.Fprintln(tw, row(i))
	}
	return tw.Flush()
}

// MorePages reports whether B pages more than A.
func (c *ReplayComparison) MorePages() bool {
	return c.B != nil && c.B.Summary.Pages > c.A.Summary.Pages
}

// MoreEscalations reports whether B's escalation policies notify more
// often than A's (Summary.Escalations).
func (c *ReplayComparison) MoreEscalations() bool {
	return c.B != nil && c.B.Summary.Escalations > c.A.Summary.Escalations
}
