package escalate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEngineSameAsReference runs random histories (incidents opened,
// their alerts changed, acknowledged, snoozed, escalated, resolved and
// forgotten, effects done or left to retry, policies reloaded, the state
// restored through JSON, ticks at random times) on the engine and on
// refEngine, the engine as it was when Tick went through every incident
// sorted by id: both fire the same steps in the same order, answer every
// event alike and keep the same state.
func TestEngineSameAsReference(t *testing.T) {
	// short is chain without its action; gone matches nothing; the
	// incidents' subjects pick among them.
	short := Policy{Name: "short", Matchers: []string{`team="b"`}, Steps: chain.Steps[:2], AckTimeout: 7 * time.Minute}
	all := func(r *rand.Rand) []Policy {
		ps := []Policy{short}
		for _, p := range []Policy{timeout, repeating, chain} {
			if r.IntN(5) > 0 {
				p.Matchers = []string{fmt.Sprintf(`team=~"%s|c"`, p.Name[:1])}
				ps = append(ps, p)
			}
		}
		r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		return ps
	}
	teams := []string{"t", "r", "c", "b", "x"}
	for seed := range uint64(150) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			o := Options{RetryAfter: 20 * time.Second, MaxRetryAfter: 3 * time.Minute}
			if r.IntN(2) == 0 {
				o.Retention = time.Duration(1+r.IntN(40)) * time.Minute
			}
			ps := all(r)
			e, err := New(ps, o)
			require.NoError(t, err)
			ref, err := newRefEngine(ps, o)
			require.NoError(t, err)
			now := t0
			var keys []string // returned by Tick, maybe done since
			for i := range 400 {
				id := fmt.Sprintf("inc-%d", r.IntN(12))
				alerts := []string{fmt.Sprint(r.IntN(3)), fmt.Sprint(r.IntN(3))}
				var got, want error
				what := ""
				switch op := r.IntN(16); op {
				case 0, 1:
					what = "open"
					s := Subject{Labels: map[string]string{"team": teams[r.IntN(len(teams))]}}
					var p1, p2 string
					p1, got = e.Open(now, id, s, alerts)
					p2, want = ref.Open(now, id, s, alerts)
					require.Equal(t, p2, p1)
				case 2:
					what = "alerts"
					var x1, x2 bool
					x1, got = e.AlertsChanged(now, id, alerts)
					x2, want = ref.AlertsChanged(now, id, alerts)
					require.Equal(t, x2, x1)
				case 3:
					what = "acknowledge"
					got, want = e.Acknowledge(now, id, "ann"), ref.Acknowledge(now, id, "ann")
				case 4:
					what = "unacknowledge"
					got, want = e.Unacknowledge(now, id, "bob"), ref.Unacknowledge(now, id, "bob")
				case 5:
					what = "snooze"
					until := now.Add(time.Duration(1+r.IntN(30)) * time.Minute)
					got, want = e.Snooze(now, id, until, "cid"), ref.Snooze(now, id, until, "cid")
				case 6:
					what = "escalate"
					got, want = e.Escalate(now, id, "failed"), ref.Escalate(now, id, "failed")
				case 7:
					what = "resolve"
					got, want = e.Resolve(now, id, "dee"), ref.Resolve(now, id, "dee")
				case 8:
					what = "forget"
					require.Equal(t, ref.Forget(id), e.Forget(id))
				case 9:
					what = "done"
					if len(keys) > 0 {
						k := keys[r.IntN(len(keys))]
						require.Equal(t, ref.Done(k), e.Done(k))
					}
				case 10:
					if r.IntN(4) == 0 {
						what = "policies"
						ps := all(r)
						require.NoError(t, e.SetPolicies(ps))
						require.NoError(t, ref.SetPolicies(ps))
					}
				case 11:
					if r.IntN(4) == 0 {
						what = "restore"
						b, err := json.Marshal(e.State())
						require.NoError(t, err)
						var s State
						require.NoError(t, json.Unmarshal(b, &s))
						e, err = New(ps, o)
						require.NoError(t, err)
						require.NoError(t, e.SetPolicies(ref.policiesOf()))
						require.NoError(t, e.Restore(s))
						ref.changes = e.changes
					}
				default:
					// Time passes, by a second to most of an hour, and
					// the engines tick.
					what = "tick"
					now = now.Add(time.Duration(1+r.IntN(3000)) * time.Second)
					gotEfs, wantEfs := e.Tick(now), ref.Tick(now)
					require.Equal(t, wantEfs, gotEfs, "history %d, step %d: tick at %s", seed, i, now.Sub(t0))
					for _, ef := range gotEfs {
						keys = append(keys, ef.Key)
						if r.IntN(3) > 0 {
							require.Equal(t, ref.Done(ef.Key), e.Done(ef.Key))
						}
					}
				}
				msg := fmt.Sprintf("history %d, step %d: %s %s at %s", seed, i, what, id, now.Sub(t0))
				require.Equal(t, want, got, msg)
				require.Equal(t, ref.State(), e.State(), msg)
				require.Equal(t, ref.Changes(), e.Changes(), msg)
				require.Equal(t, ref.Pending(id), e.Pending(id), msg)
			}
		})
	}
}

// policiesOf returns the reference's policies, in order.
func (e *refEngine) policiesOf() []Policy {
	ps := make([]Policy, len(e.policies))
	for i, p := range e.policies {
		ps[i] = p.Policy
	}
	return ps
}
