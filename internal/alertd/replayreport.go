package alertd

import (
	"fmt"
	"io"
	"slices"
	"sort"

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
}

// ReplayChange is one firing whose outcome differs between two replays.
type ReplayChange struct {
	Fingerprint string    `json:"fingerprint"`
	Alert       string    `json:"alert"`
	FiredAt     time.Time `json:"fired_at"`
	A           string    `json:"a"`
	B           string    `json:"b"`
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
	index := func(fs []ReplayFiring) map[key]*ReplayFiring {
		m := make(map[key]*ReplayFiring, len(fs))
		for i := range fs {
			m[key{fs[i].Fingerprint, fs[i].FiredAt.UnixMilli()}] = &fs[i]
		}
		return m
	}
	ia, ib := index(a.Firings), index(b.Firings)
	describe := func(f *ReplayFiring) string {
		if f == nil {
			return outcomeNone
		}
		if f.Outcome == OutcomeSuppressed {
			return f.Outcome + " (" + f.SuppressedBy + ")"
		}
		return f.Outcome
	}
	seen := map[key]bool{}
	for _, m := range []map[key]*ReplayFiring{ia, ib} {
		for k, f := range m {
			if seen[k] {
				continue
			}
			seen[k] = true
			oa, ob := describe(ia[k]), describe(ib[k])
			if oa == ob {
				continue
			}
			c.Changes = append(c.Changes, ReplayChange{Fingerprint: k.fp, Alert: f.Labels.String(), FiredAt: f.FiredAt, A: oa, B: ob})
		}
	}
	sort.Slice(c.Changes, func(i, j int) bool {
		x, y := c.Changes[i], c.Changes[j]
		if !x.FiredAt.Equal(y.FiredAt) {
			return x.FiredAt.Before(y.FiredAt)
		}
		return x.Fingerprint < y.Fingerprint
	})
	return c
}

// maxTextChanges bounds the changes the text report lists.
const maxTextChanges = 50

// WriteText writes the comparison for people: the summary side by side,
// then the changed firings.
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
	var reasons []string
	for _, r := range results {
		for k := range r.Summary.Suppressed {
			if !slices.Contains(reasons, k) {
				reasons = append(reasons, k)
			}
		}
	}
	sort.Strings(reasons)
	row("suppressed", func(r *ReplayResult) string {
		n := 0
		for _, v := range r.Summary.Suppressed {
			n += v
		}
		return fmt.Sprint(n)
	})
	for _, k := range reasons {
		row("  by "+k, func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Suppressed[k]) })
	}
	row("unrouted", func(r *ReplayResult) string { return fmt.Sprint(r.Summary.Unrouted) })
	if err := tw.Flush(); err != nil {
		return err
	}
	if c.B == nil {
		return nil
	}
	fmt.Fprintf(w, "\n%d firings changed outcome", len(c.Changes))
	if len(c.Changes) == 0 {
		_, err := fmt.Fprintln(w, ".")
		return err
	}
	fmt.Fprintln(w, ":")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "fired at\talert\tA\tB")
	for i, ch := range c.Changes {
		if i == maxTextChanges {
			fmt.Fprintf(tw, "… and %d more (see --output=json)\n", len(c.Changes)-i)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.FiredAt.UTC().Format(time.RFC3339), ch.Alert, ch.A, ch.B)
	}
	return tw.Flush()
}

// MorePages reports whether B pages more than A.
func (c *ReplayComparison) MorePages() bool {
	return c.B != nil && c.B.Summary.Pages > c.A.Summary.Pages
}
