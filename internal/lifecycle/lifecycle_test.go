package lifecycle

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// A scripted series of deploy events gives exactly the hand-computed
// values.
func TestComputeScripted(t *testing.T) {
	now := at("2025-06-30T00:00:00Z")
	// The window is (2025-05-31T00:00Z, 2025-06-30T00:00Z], 30 days.
	deps := []Deployment{
		// E0: before the window: its lead time (2h) counts, it does not.
		{Model: "fraud", Environment: "prod", Version: "v1", CommitTime: at("2025-05-20T08:00:00Z"), Time: at("2025-05-20T10:00:00Z"), Outcome: "success", Kind: "deploy"},
		// E2 (listed out of order on purpose): the rollback of E1, an hour
		// later. Not a change.
		{Model: "fraud", Environment: "prod", Version: "v1", Time: at("2025-06-01T13:00:00Z"), Outcome: "success", Kind: "rollback"},
		// E1: lead time 30m; the next event is a rollback: a change
		// failure (rolled_back), restored by E2 after 1h.
		{Model: "fraud", Environment: "prod", Version: "v2", CommitTime: at("2025-06-01T11:30:00Z"), Time: at("2025-06-01T12:00:00Z"), Outcome: "success", Kind: "deploy"},
		// E3: failed: a change failure (outcome), no lead time (not a
		// success), restored by E4 after 2h30m.
		{Model: "fraud", Environment: "prod", Version: "v3", CommitTime: at("2025-06-04T09:00:00Z"), Time: at("2025-06-05T09:00:00Z"), Outcome: "failure", Kind: "deploy"},
		// E4: lead time 26h30m; an incident of fraud (no environment)
		// opens 8h30m later, before E5 and within 24h: a change failure
		// (incident), with no time to restore.
		{Model: "fraud", Environment: "prod", Version: "v3", CommitTime: at("2025-06-04T09:00:00Z"), Time: at("2025-06-05T11:30:00Z"), Outcome: "success", Kind: "deploy"},
		// E5: lead time 1h; the incident of 2025-06-12 opens 48h later,
		// past the 24h incident window: not a failure.
		{Model: "fraud", Environment: "prod", Version: "v4", CommitTime: at("2025-06-10T09:00:00Z"), Time: at("2025-06-10T10:00:00Z"), Outcome: "success", Kind: "deploy"},
		// E6: no commit time, no lead time; the incident an hour later is
		// of staging: not a failure.
		{Model: "fraud", Environment: "prod", Version: "v5", Time: at("2025-06-20T15:00:00Z"), Outcome: "success", Kind: "deploy"},
		// After now: ignored.
		{Model: "fraud", Environment: "prod", Version: "v6", Time: at("2025-07-01T00:00:00Z"), Outcome: "failure", Kind: "deploy"},
		// Staging: one failed change, never restored.
		{Model: "fraud", Environment: "staging", Version: "v5", Time: at("2025-06-15T00:00:00Z"), Outcome: "failure", Kind: "deploy"},
	}
	incs := []Incident{
		{Model: "fraud", Time: at("2025-06-05T20:00:00Z")},
		{Model: "fraud", Environment: "prod", Time: at("2025-06-12T10:00:00Z")},
		{Model: "fraud", Environment: "staging", Time: at("2025-06-20T16:00:00Z")},
		{Model: "churn", Time: at("2025-06-10T11:00:00Z")},
	}
	got := Compute(deps, incs, now, Options{})
	require.Len(t, got, 2)

	prod := got[Key{"fraud", "prod"}]
	// Changes in the window: E1, E3, E4, E5, E6 = 5; successful: E1, E4,
	// E5, E6 = 4; failed: E1, E3, E4 = 3.
	require.Equal(t, 5, prod.Changes)
	require.Equal(t, 4, prod.Deployments)
	require.Equal(t, 3, prod.ChangeFailures)
	// Sorted by time, E0..E6 are indices 0..6.
	require.Equal(t, map[int]string{1: FailedRollback, 3: FailedOutcome, 4: FailedIncident}, prod.Failures)
	// 4 deployments / 30 days.
	require.InDelta(t, 4.0/30, prod.FrequencyPerDay, 1e-12)
	// 3 failures / 5 changes.
	require.InDelta(t, 0.6, prod.ChangeFailureRatio, 1e-12)
	// E0 2h, E1 30m, E4 26h30m, E5 1h.
	require.Equal(t, []time.Duration{2 * time.Hour, 30 * time.Minute, 26*time.Hour + 30*time.Minute, time.Hour}, prod.LeadTimes)
	// E1 restored by E2 after 1h, E3 by E4 after 2h30m; E4's failure
	// (incident) has none.
	require.Equal(t, []time.Duration{time.Hour, 2*time.Hour + 30*time.Minute}, prod.RestoreTimes)

	staging := got[Key{"fraud", "staging"}]
	require.Equal(t, 1, staging.Changes)
	require.Equal(t, 0, staging.Deployments)
	require.Equal(t, 1, staging.ChangeFailures)
	require.Zero(t, staging.FrequencyPerDay)
	require.Equal(t, 1.0, staging.ChangeFailureRatio)
	require.Empty(t, staging.LeadTimes)
	require.Empty(t, staging.RestoreTimes, "not restored yet")
}

func TestComputeEdges(t *testing.T) {
	now := at("2025-06-30T00:00:00Z")
	t.Run("no changes in the window", func(t *testing.T) {
		got := Compute([]Deployment{{Model: "m", Time: at("2025-01-01T00:00:00Z"), Outcome: "success", Kind: "deploy"}}, nil, now, Options{})
		s := got[Key{"m", ""}]
		require.Zero(t, s.Changes)
		require.True(t, math.IsNaN(s.ChangeFailureRatio))
	})
	t.Run("incident at the deploy's time counts, at the next change's does not", func(t *testing.T) {
		deps := []Deployment{
			{Model: "m", Time: at("2025-06-10T00:00:00Z"), Outcome: "success", Kind: "deploy"},
			{Model: "m", Time: at("2025-06-10T01:00:00Z"), Outcome: "success", Kind: "deploy"},
		}
		got := Compute(deps, []Incident{{Model: "m", Time: at("2025-06-10T00:00:00Z")}, {Model: "m", Time: at("2025-06-10T01:00:00Z")}}, now, Options{})
		s := got[Key{"m", ""}]
		// The second incident is at the second change's time: it counts
		// against the second, not the first.
		require.Equal(t, map[int]string{0: FailedIncident, 1: FailedIncident}, s.Failures)
	})
	t.Run("window option", func(t *testing.T) {
		deps := []Deployment{{Model: "m", Time: at("2025-06-29T00:00:00Z"), Outcome: "success", Kind: "deploy"}}
		got := Compute(deps, nil, now, Options{Window: 7 * 24 * time.Hour})
		require.InDelta(t, 1.0/7, got[Key{"m", ""}].FrequencyPerDay, 1e-12)
	})
}
