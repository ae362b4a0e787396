package alertd

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/escalate"
)

// syncPolicies escalate every incident in two levels. The test reports
// the second level's notifications done one time in four, so some stay
// pending, with them the resolutions, and their incidents cannot be
// forgotten at once.
var syncPolicies = []escalate.Policy{{Name: "all", Steps: []escalate.Step{
	{Notify: []string{"l1"}},
	{Wait: 20 * time.Minute},
	{Notify: []string{"l2"}},
}}}

func syncSubject(*incident) escalate.Subject { return escalate.Subject{} }

// newSyncEscalator returns an escalator in memory with syncPolicies.
func newSyncEscalator(t testing.TB) *escalator {
	x, err := newEscalator("", prometheus.NewRegistry(), promslog.NewNopLogger(), time.Now)
	require.NoError(t, err)
	require.NoError(t, x.setPolicies(syncPolicies))
	return x
}

// The escalation loop's sync from what changed of the ledger's incidents
// (incidents.changes) tells the engine what the walk over every incident
// did, over random histories of incidents opened, their alerts firing and
// resolving, incidents closing, leaving the list a day later, pruned, and
// notifications done or pending: the two engines keep the same state and
// record the same decisions.
func TestEscalationSyncChanges(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 2))
			is := newIncidents()
			walk, changes := newSyncEscalator(t), newSyncEscalator(t)
			now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
			var ids []string
			for step := range 300 {
				switch op := r.IntN(10); {
				case op < 3 || len(ids) == 0:
					id := fmt.Sprintf("inc-%03d", len(ids))
					ids = append(ids, id)
					is.group(&Event{Time: now, Incident: id, GroupKey: id, Receiver: "hook", Fingerprint: fmt.Sprint(r.IntN(4))})
				case op < 5:
					id := ids[r.IntN(len(ids))]
					if in := is.byID[id]; in != nil && in.ClosedAt == nil {
						is.group(&Event{Time: now, Incident: id, GroupKey: id, Receiver: "hook", Fingerprint: fmt.Sprint(r.IntN(4))})
					}
				case op < 8:
					is.resolve(ids[r.IntN(len(ids))], fmt.Sprint(r.IntN(4)), now)
				case op < 9:
					is.prune(now.Add(-incidentClosedRetention))
				default:
					now = now.Add(time.Duration(r.IntN(12)) * time.Hour)
				}
				now = now.Add(time.Duration(r.IntN(600)) * time.Second)
				want := walk.sync(now, is.list(now), syncSubject)
				list, gone, all := is.changes(now)
				var got []escalationNote
				if all {
					got = changes.sync(now, list, syncSubject)
				} else {
					got = changes.syncChanges(now, list, gone, syncSubject)
				}
				require.ElementsMatch(t, want, got, "step %d", step)
				a, b := walk.tick(now), changes.tick(now)
				require.Equal(t, a, b, "step %d", step)
				for _, ef := range a {
					if ef.Notify.Level < 2 || r.IntN(4) == 0 {
						walk.done(ef.Key)
						changes.done(ef.Key)
					}
				}
				require.Equal(t, walk.engine.State(), changes.engine.State(), "step %d", step)
			}
		})
	}
}

// BenchmarkEscalationSync measures the escalation loop's sync with n open
// incidents, one of which changes per pass: by a walk over every incident
// (sync of incidentList, as before) and from what changed (syncChanges).
func BenchmarkEscalationSync(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		for _, how := range []string{"walk", "changes"} {
			b.Run(fmt.Sprintf("incidents=%d/%s", n, how), func(b *testing.B) {
				is := incidentsOpen(n)
				now := time.Unix(0, 0)
				for _, in := range is.byID {
					in.Firing = []string{"a"}
				}
				x := newSyncEscalator(b)
				list, _, _ := is.changes(now)
				x.sync(now, list, syncSubject)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					now = now.Add(time.Second)
					// One incident's alert b fires, or resolves.
					id := fmt.Sprintf("open%05d", i%n)
					if in := is.byID[id]; len(in.Firing) > 1 {
						is.resolve(id, "b", now)
					} else {
						is.group(&Event{Time: now, Incident: id, GroupKey: in.GroupKey, Receiver: "hook",
							GroupLabels: model.LabelSet{}, Fingerprint: "b"})
					}
					if how == "walk" {
						x.sync(now, is.list(now), syncSubject)
						continue
					}
					list, gone, _ := is.changes(now)
					x.syncChanges(now, list, gone, syncSubject)
				}
			})
		}
	}
}
