package actions

import (
	"fmt"
	"time"
)

// Reasons an action is refused, the values of the reason label of
// alertd_actions_refused_total.
const (
	// ReasonCooldown: the action ran for the same model less than its
	// cooldown ago.
	ReasonCooldown = "cooldown"
	// ReasonBudget: the action ran daily_budget times this UTC day.
	ReasonBudget = "budget"
	// ReasonRejected: an operator rejected it.
	ReasonRejected = "rejected"
	// ReasonExpired: nobody approved it in time.
	ReasonExpired = "expired"
)

// Reasons returns the reasons of refusals.
func Reasons() []string { return []string{ReasonCooldown, ReasonBudget, ReasonRejected, ReasonExpired} }

// Attempt is a past trigger of an action that counts against its
// guardrails: one sent, or waiting for approval.
type Attempt struct {
	Model string
	Time  time.Time
}

// Guard holds an action's guardrails.
type Guard struct {
	// Cooldown is the least time between two triggers for one model; 0
	// disables it.
	Cooldown time.Duration
	// DailyBudget is the most triggers per UTC day, over all models.
	DailyBudget int
}

// Refusal says why a guardrail refuses a trigger, and until when.
type Refusal struct {
	Reason string
	Detail string
	Until  time.Time
}

// Check returns why the guardrails refuse a trigger for model at now,
// given the past attempts; nil when they allow it. The cooldown is
// checked first.
func (g Guard) Check(model string, past []Attempt, now time.Time) *Refusal {
	var last time.Time
	today := 0
	day := startOfDay(now)
	for _, p := range past {
		if p.Time.After(now) {
			continue
		}
		if p.Model == model && p.Time.After(last) {
			last = p.Time
		}
		if !p.Time.Before(day) {
			today++
		}
	}
	if g.Cooldown > 0 && !last.IsZero() && now.Sub(last) < g.Cooldown {
		until := last.Add(g.Cooldown)
		return &Refusal{Reason: ReasonCooldown, Until: until,
			Detail: fmt.Sprintf("cooldown: triggered for model %q at %s, less than the cooldown of %s ago; allowed again at %s",
				model, last.UTC().Format(time.RFC3339), g.Cooldown, until.UTC().Format(time.RFC3339))}
	}
	if g.DailyBudget > 0 && today >= g.DailyBudget {
		until := day.Add(24 * time.Hour)
		return &Refusal{Reason: ReasonBudget, Until: until,
			Detail: fmt.Sprintf("budget: triggered %d times today (UTC), the daily budget is %d; allowed again at %s",
				today, g.DailyBudget, until.UTC().Format(time.RFC3339))}
	}
	return nil
}

// UsedToday returns how many of the attempts fall on now's UTC day.
func UsedToday(past []Attempt, now time.Time) int {
	n, day := 0, startOfDay(now)
	for _, p := range past {
		if !p.Time.Before(day) && !p.Time.After(now) {
			n++
		}
	}
	return n
}

// startOfDay is the midnight (UTC) that begins t's UTC day.
func startOfDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Schedule runs an action every Every, at Offset past each multiple of
// Every since the Unix epoch: every 24h with offset 2h runs at 02:00 UTC.
type Schedule struct {
	Every, Offset time.Duration
}

// Slot returns the start of the latest slot at or before now.
func (s Schedule) Slot(now time.Time) time.Time {
	since := now.Sub(time.Unix(0, 0).Add(s.Offset))
	k := since / s.Every
	if since < 0 && since%s.Every != 0 {
		k--
	}
	return time.Unix(0, 0).Add(s.Offset + k*s.Every).UTC()
}

// Outcomes of a verification, the values of the result label of
// alertd_actions_verification_total.
const (
	// VerifyPending: the alerts still fire and there is time left.
	VerifyPending = ""
	// VerifyResolved: the alerts resolved in time.
	VerifyResolved = "resolved"
	// VerifyFailed: the alerts still fired when the time was up.
	VerifyFailed = "failed"
)

// VerifyOutcome decides the verification of an action triggered at
// start, which must see its alerts resolve within within: resolved says
// whether they all have at now.
func VerifyOutcome(start time.Time, within time.Duration, resolved bool, now time.Time) string {
	switch {
	case resolved:
		return VerifyResolved
	case !now.Before(start.Add(within)):
		return VerifyFailed
	}
	return VerifyPending
}
