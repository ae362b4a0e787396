package quality

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := New(opts)
	require.NoError(t, err)
	return s
}

func pred(id, model, class string) Prediction {
	return Prediction{ID: id, Model: model, Value: Class(class)}
}

func TestLabelReasons(t *testing.T) {
	opts := Options{MaxEntries: 2, TTL: time.Hour, MaxEarly: 4, EarlyTTL: time.Minute}
	for _, tc := range []struct {
		name string
		// setup runs against a fresh store before the label under test.
		setup func(s *Store)
		label Label
		at    time.Duration
		want  Reason
	}{
		{
			name:  "matched",
			setup: func(s *Store) { s.Observe(t0, pred("a", "m", "cat")) },
			label: Label{ID: "a", Value: Class("cat")},
			want:  ReasonMatched,
		},
		{
			name: "twice",
			setup: func(s *Store) {
				s.Observe(t0, pred("a", "m", "cat"))
				s.Label(t0, Label{ID: "a", Value: Class("cat")})
			},
			label: Label{ID: "a", Value: Class("dog")},
			want:  ReasonDuplicate,
		},
		{
			name:  "before prediction",
			label: Label{ID: "a", Value: Class("cat")},
			want:  ReasonHeld,
		},
		{
			name:  "before prediction, twice",
			setup: func(s *Store) { s.Label(t0, Label{ID: "a", Value: Class("cat")}) },
			label: Label{ID: "a", Value: Class("cat")},
			want:  ReasonDuplicate,
		},
		{
			name:  "unknown id without early buffer",
			setup: func(s *Store) { s.opts.MaxEarly = 0 },
			label: Label{ID: "nope", Value: Class("cat")},
			want:  ReasonUnknownID,
		},
		{
			name:  "after expiry, lazily",
			setup: func(s *Store) { s.Observe(t0, pred("a", "m", "cat")) },
			label: Label{ID: "a", Value: Class("cat")},
			at:    time.Hour,
			want:  ReasonExpired,
		},
		{
			name: "after expiry, by Expire",
			setup: func(s *Store) {
				s.Observe(t0, pred("a", "m", "cat"))
				s.Expire(t0.Add(2 * time.Hour))
			},
			label: Label{ID: "a", Value: Class("cat")},
			at:    2 * time.Hour,
			want:  ReasonExpired,
		},
		{
			name: "after eviction",
			setup: func(s *Store) {
				for _, id := range []string{"a", "b", "c"} {
					s.Observe(t0, pred(id, "m", "cat"))
				}
			},
			label: Label{ID: "a", Value: Class("cat")},
			want:  ReasonEvicted,
		},
		{
			name:  "empty id",
			label: Label{Value: Class("cat")},
			want:  ReasonInvalid,
		},
		{
			name:  "empty class",
			setup: func(s *Store) { s.Observe(t0, pred("a", "m", "cat")) },
			label: Label{ID: "a"},
			want:  ReasonInvalid,
		},
		{
			name:  "NaN",
			setup: func(s *Store) { s.Observe(t0, Prediction{ID: "a", Model: "m", Value: Number(1)}) },
			label: Label{ID: "a", Value: Number(math.NaN())},
			want:  ReasonInvalid,
		},
		{
			name:  "infinity",
			setup: func(s *Store) { s.Observe(t0, Prediction{ID: "a", Model: "m", Value: Number(1)}) },
			label: Label{ID: "a", Value: Number(math.Inf(1))},
			want:  ReasonInvalid,
		},
		{
			name:  "number for a classification",
			setup: func(s *Store) { s.Observe(t0, pred("a", "m", "cat")) },
			label: Label{ID: "a", Value: Number(1)},
			want:  ReasonInvalid,
		},
		{
			name:  "class for a regression",
			setup: func(s *Store) { s.Observe(t0, Prediction{ID: "a", Model: "m", Value: Number(1)}) },
			label: Label{ID: "a", Value: Class("1")},
			want:  ReasonInvalid,
		},
		{
			name:  "other model",
			setup: func(s *Store) { s.Observe(t0, pred("a", "m", "cat")) },
			label: Label{ID: "a", Model: "other", Value: Class("cat")},
			want:  ReasonInvalid,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, opts)
			if tc.setup != nil {
				tc.setup(s)
			}
			_, got := s.Label(t0.Add(tc.at), tc.label)
			require.Equal(t, tc.want, got, "got %s", got)
			if got != ReasonHeld {
				// The label under test is counted once; only "twice" had
				// counted a label with the same reason before it.
				require.NotZero(t, s.Stats().Labels[got])
			}
		})
	}
}

func TestInvalidLabelKeepsPrediction(t *testing.T) {
	s := newStore(t, Options{})
	s.Observe(t0, pred("a", "m", "cat"))
	_, r := s.Label(t0, Label{ID: "a", Value: Number(1)})
	require.Equal(t, ReasonInvalid, r)
	o, r := s.Label(t0, Label{ID: "a", Value: Class("cat")})
	require.Equal(t, ReasonMatched, r)
	require.Equal(t, "cat", o.Actual)
}

func TestObserveReasons(t *testing.T) {
	s := newStore(t, Options{})
	_, r := s.Observe(t0, pred("a", "m", "cat"))
	require.Equal(t, ReasonPending, r)
	_, r = s.Observe(t0, pred("a", "m", "dog"))
	require.Equal(t, ReasonDuplicatePrediction, r)
	o, r := s.Label(t0, Label{ID: "a", Value: Class("cat")})
	require.Equal(t, ReasonMatched, r)
	require.Equal(t, "cat", o.Predicted, "the first prediction is kept")
	_, r = s.Observe(t0, pred("a", "m", "dog"))
	require.Equal(t, ReasonDuplicatePrediction, r, "a matched id is not predicted again")

	for name, p := range map[string]Prediction{
		"no id":           {Model: "m", Value: Class("x")},
		"no model":        {ID: "x", Value: Class("x")},
		"no class":        {ID: "x", Model: "m"},
		"NaN":             {ID: "x", Model: "m", Value: Number(math.NaN())},
		"probs no class":  {ID: "x", Model: "m", Value: Class("x"), Probabilities: []float64{1}},
		"probs too large": {ID: "x", Model: "m", Value: Class("x"), Probabilities: []float64{2}, Classes: []string{"x"}},
		"probs NaN":       {ID: "x", Model: "m", Value: Class("x"), Probabilities: []float64{math.NaN()}, Classes: []string{"x"}},
	} {
		_, r := s.Observe(t0, p)
		require.Equal(t, ReasonInvalidPrediction, r, name)
	}
	st := s.Stats()
	require.Equal(t, uint64(1), st.Predictions)
	require.Equal(t, uint64(2), st.DuplicatePredictions)
	require.Equal(t, uint64(7), st.InvalidPredictions)
}

func TestEarlyLabel(t *testing.T) {
	s := newStore(t, Options{MaxEarly: 2, EarlyTTL: time.Minute})
	_, r := s.Label(t0, Label{ID: "a", Value: Class("cat")})
	require.Equal(t, ReasonHeld, r)

	o, r := s.Observe(t0.Add(time.Second), pred("a", "m", "dog"))
	require.Equal(t, ReasonMatched, r)
	require.Equal(t, Outcome{ID: "a", Model: "m", Predicted: "dog", Actual: "cat", ActualClass: "cat", ActualIndex: 1}, o, "delay is clamped to 0")
	require.Equal(t, 0, s.Len())
	_, r = s.Label(t0, Label{ID: "a", Value: Class("cat")})
	require.Equal(t, ReasonDuplicate, r)

	// A held label of the wrong kind is counted invalid; the prediction waits.
	s.Label(t0, Label{ID: "b", Value: Number(3)})
	_, r = s.Observe(t0, pred("b", "m", "dog"))
	require.Equal(t, ReasonPending, r)
	require.Equal(t, 1, s.Len())

	// Held labels whose prediction never comes become unknown_id: by
	// eviction (MaxEarly 2) and by expiry.
	for _, id := range []string{"c", "d", "e"} {
		s.Label(t0, Label{ID: id, Value: Class("cat")})
	}
	require.Equal(t, 2, s.Stats().Held)
	require.Equal(t, 2, s.Expire(t0.Add(time.Minute)))
	st := s.Stats()
	require.Equal(t, 0, st.Held)
	require.Equal(t, uint64(1), st.HeldEvicted)
	require.Equal(t, uint64(2), st.HeldExpired)
	require.Equal(t, map[Reason]uint64{
		ReasonMatched: 1, ReasonDuplicate: 1, ReasonInvalid: 1, ReasonUnknownID: 3,
		ReasonExpired: 0, ReasonEvicted: 0,
	}, st.Labels)
}

func TestExpireBounded(t *testing.T) {
	s := newStore(t, Options{TTL: time.Minute, ExpireBatch: 10})
	for i := range 25 {
		s.Observe(t0, pred(fmt.Sprint(i), "m", "cat"))
	}
	later := t0.Add(time.Minute)
	require.Equal(t, 10, s.Expire(later))
	require.Equal(t, 10, s.Expire(later))
	require.Equal(t, 5, s.Expire(later))
	require.Equal(t, 0, s.Expire(later))
	require.Equal(t, uint64(25), s.Stats().Expired)

	// Observe expires a few on the side, so an idle Expire is not required.
	for i := range 8 {
		s.Observe(later, pred(fmt.Sprint("x", i), "m", "cat"))
	}
	for i := range 8 {
		s.Observe(later.Add(time.Hour), pred(fmt.Sprint("y", i), "m", "cat"))
	}
	require.Equal(t, 8, s.Len())
}

func TestRecentIsBounded(t *testing.T) {
	s := newStore(t, Options{MaxRecent: 3})
	for i := range 5 {
		id := fmt.Sprint(i)
		s.Observe(t0, pred(id, "m", "cat"))
		s.Label(t0, Label{ID: id, Value: Class("cat")})
	}
	require.Len(t, s.index, 3)
	_, r := s.Label(t0, Label{ID: "4", Value: Class("cat")})
	require.Equal(t, ReasonDuplicate, r)
	_, r = s.Label(t0, Label{ID: "0", Value: Class("cat")})
	require.Equal(t, ReasonHeld, r, "forgotten ids look new")
}

func TestClassCap(t *testing.T) {
	s := newStore(t, Options{MaxClasses: 2})
	for i, c := range []string{"a", "b", "c", "d"} {
		s.Observe(t0, pred(fmt.Sprint(i), "m", c))
	}
	// A second model has its own classes.
	s.Observe(t0, pred("x", "n", "z"))
	for _, tc := range []struct {
		id, actual     string
		want           Outcome
		wantPredicted  string
		wantOverflowed bool
	}{
		// m's classes in the order seen: a, b, then OtherClass.
		{id: "0", actual: "a", want: Outcome{Model: "m", Predicted: "a", Actual: "a", Correct: true}},
		{id: "1", actual: "c", want: Outcome{Model: "m", Predicted: "b", PredictedIndex: 1, Actual: OtherClass, ActualIndex: 2, ActualOverflow: true}},
		{id: "2", actual: "b", want: Outcome{Model: "m", Predicted: OtherClass, PredictedIndex: 2, PredictedOverflow: true, Actual: "b", ActualIndex: 1}},
		{id: "3", actual: OtherClass, want: Outcome{Model: "m", Predicted: OtherClass, PredictedIndex: 2, PredictedOverflow: true, Actual: OtherClass, ActualIndex: 2, Correct: true}},
		{id: "x", actual: "y", want: Outcome{Model: "n", Predicted: "z", Actual: "y", ActualIndex: 1}},
	} {
		o, r := s.Label(t0, Label{ID: tc.id, Value: Class(tc.actual)})
		require.Equal(t, ReasonMatched, r)
		// The id and the actual class as the label gave it, not capped.
		tc.want.ID, tc.want.ActualClass = tc.id, tc.actual
		require.Equal(t, tc.want, o, tc.id)
	}
}

// TestNoDoubleCount sends random interleavings of predictions and labels
// (some labels early, some twice, for unknown ids, malformed or late; some
// predictions repeated) and checks that each id is matched at most once and
// that every label gets exactly one final reason.
func TestNoDoubleCount(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			// MaxRecent outlasts the run, so a repeated prediction is always
			// recognised; the bounded ring itself is TestRecentIsBounded's.
			s := newStore(t, Options{MaxEntries: 20, TTL: 5 * time.Second, MaxRecent: 10000, MaxEarly: 10, EarlyTTL: 2 * time.Second, ExpireBatch: 7})
			now := t0
			next := 0 // ids 0..next-1 were predicted
			var sent, matched uint64
			seen := map[string]int{}
			record := func(r Reason, id string) {
				if r == ReasonMatched {
					matched++
					seen[id]++
					require.LessOrEqual(t, seen[id], 1, "id %s matched twice", id)
				}
			}
			for range 5000 {
				now = now.Add(time.Duration(rng.IntN(100)) * time.Millisecond)
				// Labels pick past, current, not yet and never predicted ids.
				id := fmt.Sprint(rng.IntN(next + 20))
				if rng.IntN(20) == 0 {
					id = fmt.Sprint("never-", rng.IntN(1000))
				}
				switch rng.IntN(10) {
				case 0, 1, 2:
					id := fmt.Sprint(next)
					next++
					_, r := s.Observe(now, pred(id, "m", fmt.Sprint(rng.IntN(3))))
					record(r, id)
				case 3:
					if next > 0 {
						id := fmt.Sprint(rng.IntN(next))
						_, r := s.Observe(now, pred(id, "m", "0"))
						require.Equal(t, ReasonDuplicatePrediction, r)
					}
				case 4:
					s.Expire(now)
				case 5:
					sent++
					s.Label(now, Label{ID: id, Value: Number(1)}) // invalid or held
				default:
					sent++
					_, r := s.Label(now, Label{ID: id, Value: Class(fmt.Sprint(rng.IntN(3)))})
					record(r, id)
				}
			}
			// Let every held label resolve.
			for s.Expire(now.Add(time.Hour)) > 0 {
			}
			st := s.Stats()
			require.Zero(t, st.Held)
			var total uint64
			for _, n := range st.Labels {
				total += n
			}
			require.Equal(t, sent, total, "%v", st.Labels)
			require.Equal(t, matched, st.Labels[ReasonMatched])
			for _, r := range LabelReasons() {
				require.NotZero(t, st.Labels[r], "reason %s never happened: widen the test", r)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	s := newStore(t, Options{MaxEntries: 1000})
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 2000 {
				id := fmt.Sprint(w, "-", i)
				s.Observe(t0, pred(id, "m", "a"))
				s.Label(t0, Label{ID: id, Value: Class("a")})
				if i%100 == 0 {
					s.Stats()
					s.Expire(t0)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	require.Equal(t, uint64(8000), s.Stats().Labels[ReasonMatched])
}

func TestNewOptions(t *testing.T) {
	s := newStore(t, Options{})
	require.Equal(t, DefaultOptions(), s.Options())
	for _, o := range []Options{{MaxEntries: -1}, {TTL: -1}, {MaxClasses: -1}, {MaxRecent: -1}, {EarlyTTL: -1}, {ExpireBatch: -1}} {
		_, err := New(o)
		require.Error(t, err, "%+v", o)
	}
	require.Equal(t, "unknown_id", ReasonUnknownID.String())
	require.Equal(t, "duplicate_prediction", ReasonDuplicatePrediction.String())
	require.Equal(t, "unknown", Reason(200).String())
}

// A label another replica did not know joins here only when this store
// knows its id; an id it does not know leaves it as it was.
func TestLabelIfKnown(t *testing.T) {
	s := newStore(t, Options{MaxEntries: 10, TTL: time.Hour, MaxEarly: 4, EarlyTTL: time.Minute})
	s.Observe(t0, pred("a", "m", "cat"))
	s.Label(t0, Label{ID: "early", Value: Class("dog")})
	before := s.Stats()

	_, r, known := s.LabelIfKnown(t0, Label{ID: "nope", Value: Class("cat")})
	require.False(t, known)
	require.Equal(t, ReasonUnknownID, r)
	require.Equal(t, before, s.Stats(), "nothing counted or held")

	o, r, known := s.LabelIfKnown(t0, Label{ID: "a", Value: Class("cat")})
	require.True(t, known)
	require.Equal(t, ReasonMatched, r)
	require.Equal(t, "cat", o.Actual)
	_, r, known = s.LabelIfKnown(t0, Label{ID: "a", Value: Class("cat")})
	require.True(t, known, "a prediction matched lately is known")
	require.Equal(t, ReasonDuplicate, r)
	_, r, known = s.LabelIfKnown(t0, Label{ID: "early", Value: Class("dog")})
	require.True(t, known, "a held label is known")
	require.Equal(t, ReasonDuplicate, r)
	require.Equal(t, uint64(1), s.Stats().Labels[ReasonMatched])
	require.Equal(t, before.Labels[ReasonDuplicate]+2, s.Stats().Labels[ReasonDuplicate])
}

// With hand-off on, held labels past EarlyTTL wait for TakeExpiredHeld,
// which returns them uncounted, and CountUnknown counts those no replica
// joined.
func TestTakeExpiredHeld(t *testing.T) {
	s := newStore(t, Options{MaxEntries: 10, TTL: time.Hour, MaxEarly: 4, EarlyTTL: time.Minute})
	s.SetHandOff(true)
	s.Label(t0, Label{ID: "a", Value: Class("cat")})
	s.Label(t0.Add(time.Second), Label{ID: "b", Value: Number(2)})
	s.Expire(t0.Add(time.Hour))
	require.Equal(t, 2, s.Stats().Held, "not expired while handed off")
	require.Empty(t, s.TakeExpiredHeld(t0.Add(30*time.Second), 10))
	got := s.TakeExpiredHeld(t0.Add(time.Hour), 10)
	require.Len(t, got, 2)
	require.Equal(t, "a", got[0].ID)
	require.Equal(t, t0, got[0].Time, "the time it was received")
	require.Equal(t, Number(2), got[1].Value)
	require.Zero(t, s.Stats().Held)
	require.Zero(t, s.Stats().Labels[ReasonUnknownID])
	s.CountUnknown(1)
	require.Equal(t, uint64(1), s.Stats().Labels[ReasonUnknownID])
	require.Equal(t, uint64(1), s.Stats().HeldExpired)

	s.SetHandOff(false)
	s.Label(t0, Label{ID: "c", Value: Class("cat")})
	s.Expire(t0.Add(time.Hour))
	require.Equal(t, uint64(2), s.Stats().Labels[ReasonUnknownID], "expired as before")
}

// ReturnHeld holds again, first in line and uncounted, the labels taken
// that no replica was asked about, and joins one whose prediction came
// meanwhile.
func TestReturnHeld(t *testing.T) {
	s := newStore(t, Options{MaxEntries: 10, TTL: time.Hour, MaxEarly: 3, EarlyTTL: time.Minute})
	s.SetHandOff(true)
	for _, id := range []string{"a", "b", "c"} {
		s.Label(t0, Label{ID: id, Value: Class("cat")})
	}
	taken := s.TakeExpiredHeld(t0.Add(2*time.Minute), 10)
	require.Len(t, taken, 3)
	s.Observe(t0.Add(2*time.Minute), pred("b", "m", "cat"))
	s.Label(t0.Add(2*time.Minute), Label{ID: "new", Value: Class("dog")})

	joined := s.ReturnHeld(t0.Add(2*time.Minute), taken)
	require.Len(t, joined, 1)
	require.Equal(t, "b", joined[0].ID)
	require.Equal(t, 3, s.Stats().Held, "a, c and new")
	require.Zero(t, s.Stats().Labels[ReasonUnknownID])
	require.Empty(t, s.HeldDue(t0.Add(2*time.Minute), 30*time.Second, 10), "their time is over: not due to be asked again")
	var ids []string
	for _, l := range s.TakeExpiredHeld(t0.Add(2*time.Minute), 10) {
		ids = append(ids, l.ID)
	}
	require.Equal(t, []string{"a", "c"}, ids, "first in line, oldest first; new waits its time")

	// A store the labels held meanwhile filled evicts the one given back.
	for _, id := range []string{"x", "y"} {
		s.Label(t0.Add(2*time.Minute), Label{ID: id, Value: Class("cat")})
	}
	require.Empty(t, s.ReturnHeld(t0.Add(2*time.Minute), []HeldLabel{{Label: Label{ID: "a", Value: Class("cat"), Time: t0}}}))
	require.Equal(t, 3, s.Stats().Held)
	require.Equal(t, uint64(1), s.Stats().HeldEvicted)
	require.Equal(t, uint64(1), s.Stats().Labels[ReasonUnknownID])
}

// ReturnHeld puts off the end of the labels given back with a Retry:
// TakeExpiredHeld leaves them until it, and then takes them first, with
// their Retries; they count in HeldRetrying while held, and are the first
// evicted from a full store.
func TestReturnHeldWithRetry(t *testing.T) {
	s := newStore(t, Options{MaxEntries: 10, TTL: time.Hour, MaxEarly: 3, EarlyTTL: time.Minute})
	s.SetHandOff(true)
	for _, id := range []string{"a", "b", "c"} {
		s.Label(t0, Label{ID: id, Value: Class("cat")})
	}
	taken := s.TakeExpiredHeld(t0.Add(2*time.Minute), 10)
	require.Len(t, taken, 3)
	require.Zero(t, taken[0].Retries)
	require.True(t, taken[0].Retry.IsZero())
	a, b := taken[0], taken[1]
	a.Retries, a.Retry = 1, t0.Add(2*time.Minute+30*time.Second)
	require.Empty(t, s.ReturnHeld(t0.Add(2*time.Minute), []HeldLabel{a, b}))
	st := s.Stats()
	require.Equal(t, 2, st.Held)
	require.Equal(t, 1, st.HeldRetrying, "a")
	require.Zero(t, st.Labels[ReasonUnknownID])

	ids := func(got []HeldLabel) []string {
		var out []string
		for _, h := range got {
			out = append(out, h.ID)
		}
		return out
	}
	s.Label(t0.Add(2*time.Minute), Label{ID: "new", Value: Class("dog")})
	require.Equal(t, []string{"b"}, ids(s.TakeExpiredHeld(t0.Add(2*time.Minute+10*time.Second), 10)), "a waits for its retry; new for its time")
	require.Empty(t, s.HeldDue(t0.Add(2*time.Minute+10*time.Second), 30*time.Second, 10), "a's time is over: not due to be asked again")
	got := s.TakeExpiredHeld(t0.Add(2*time.Minute+30*time.Second), 10)
	require.Equal(t, []string{"a"}, ids(got))
	require.Equal(t, 1, got[0].Retries)
	require.True(t, a.Retry.Equal(got[0].Retry))
	require.Zero(t, s.Stats().HeldRetrying)

	// Given back again, first in line, it is the first a full store
	// evicts, as unknown_id.
	got[0].Retries, got[0].Retry = 2, t0.Add(time.Hour)
	s.ReturnHeld(t0.Add(2*time.Minute+30*time.Second), got)
	s.Label(t0.Add(time.Minute), Label{ID: "x", Value: Class("cat")})
	require.Equal(t, 3, s.Stats().Held)
	require.Equal(t, 1, s.Stats().HeldRetrying)
	s.Label(t0.Add(time.Minute), Label{ID: "y", Value: Class("cat")})
	st = s.Stats()
	require.Equal(t, 3, st.Held, "new, x and y")
	require.Zero(t, st.HeldRetrying)
	require.Equal(t, uint64(1), st.HeldEvicted)
	require.Equal(t, uint64(1), st.Labels[ReasonUnknownID])

	// One whose prediction comes while its end is put off joins.
	taken = s.TakeExpiredHeld(t0.Add(3*time.Minute), 1)
	require.Equal(t, []string{"new"}, ids(taken))
	taken[0].Retries, taken[0].Retry = 1, t0.Add(time.Hour)
	s.ReturnHeld(t0.Add(3*time.Minute), taken)
	require.Equal(t, 1, s.Stats().HeldRetrying)
	_, r := s.Observe(t0.Add(3*time.Minute), pred("new", "m", "dog"))
	require.Equal(t, ReasonMatched, r)
	require.Zero(t, s.Stats().HeldRetrying)

	// Without hand-off, Expire ends it at once, as any held label past
	// its time.
	taken = s.TakeExpiredHeld(t0.Add(3*time.Minute), 1)
	require.Equal(t, []string{"x"}, ids(taken))
	taken[0].Retries, taken[0].Retry = 1, t0.Add(time.Hour)
	s.ReturnHeld(t0.Add(3*time.Minute), taken)
	s.SetHandOff(false)
	s.Expire(t0.Add(3 * time.Minute))
	st = s.Stats()
	require.Zero(t, st.Held)
	require.Zero(t, st.HeldRetrying)
	require.Equal(t, uint64(3), st.Labels[ReasonUnknownID], "a, x and y")
}

// HeldDue returns a held label when it has waited first, then each time
// its time held has doubled, and leaves it held; ForgetHeld drops it
// uncounted.
func TestHeldDue(t *testing.T) {
	s := newStore(t, Options{MaxEntries: 10, TTL: time.Hour, MaxEarly: 4, EarlyTTL: 10 * time.Minute})
	s.SetHandOff(true)
	s.Label(t0, Label{ID: "a", Value: Class("cat")})
	s.Label(t0.Add(20*time.Second), Label{ID: "b", Value: Number(2)})
	ids := func(at time.Duration) []string {
		var out []string
		for _, l := range s.HeldDue(t0.Add(at), 30*time.Second, 10) {
			out = append(out, l.ID)
		}
		return out
	}
	require.Empty(t, ids(29*time.Second))
	require.Equal(t, []string{"a"}, ids(35*time.Second))
	require.Empty(t, ids(40*time.Second), "a is next due at 70 s, b at 50 s")
	require.Equal(t, []string{"b"}, ids(55*time.Second))
	require.Equal(t, []string{"a"}, ids(70*time.Second))
	require.Equal(t, []string{"a", "b"}, ids(4*time.Minute))
	require.Equal(t, []string{"a", "b"}, ids(9*time.Minute), "a held 9 min, b 8 min 40 s: not yet in the last 30 s")
	require.Empty(t, ids(9*time.Minute+20*time.Second), "asked at 9 min: due again at 18, after EarlyTTL")
	require.Equal(t, 2, s.Stats().Held, "still held")

	s.ForgetHeld([]Label{{ID: "a"}, {ID: "gone"}})
	require.Equal(t, 1, s.Stats().Held)
	require.Zero(t, s.Stats().Labels[ReasonUnknownID], "dropped uncounted")
	got := s.TakeExpiredHeld(t0.Add(11*time.Minute), 10)
	require.Len(t, got, 1)
	require.Equal(t, "b", got[0].ID)

	// The last first of EarlyTTL is TakeExpiredHeld's.
	s = newStore(t, Options{MaxEntries: 10, TTL: time.Hour, MaxEarly: 4, EarlyTTL: 10 * time.Minute})
	s.Label(t0, Label{ID: "late", Value: Class("cat")})
	require.Empty(t, ids(9*time.Minute+35*time.Second))
	require.Equal(t, []string{"late"}, ids(9*time.Minute+25*time.Second))

	// max bounds a call; the rest are due at the next.
	s = newStore(t, Options{MaxEntries: 10, TTL: time.Hour, MaxEarly: 4, EarlyTTL: 10 * time.Minute})
	for _, id := range []string{"x", "y", "z"} {
		s.Label(t0, Label{ID: id, Value: Class("cat")})
	}
	require.Len(t, s.HeldDue(t0.Add(time.Minute), 30*time.Second, 2), 2)
	last := s.HeldDue(t0.Add(time.Minute), 30*time.Second, 2)
	require.Len(t, last, 1)
	require.Equal(t, "z", last[0].ID)
}

// A label's model is checked when it is joined: a held label against the
// model its prediction came under. A prediction of Options.OverflowModel
// may be any model's, so no label's model is checked against it.
func TestLabelModelChecked(t *testing.T) {
	s := newStore(t, Options{OverflowModel: "__other__"})
	label := func(id, model string) Reason {
		_, r := s.Label(t0, Label{ID: id, Model: model, Value: Class("cat")})
		return r
	}
	observe := func(id, model string) Reason {
		_, r := s.Observe(t0, pred(id, model, "cat"))
		return r
	}
	require.Equal(t, ReasonPending, observe("a1", "a"))
	require.Equal(t, ReasonPending, observe("o1", "__other__"))
	require.Equal(t, ReasonPending, observe("o2", "__other__"))
	require.Equal(t, ReasonMatched, label("a1", "a"))
	require.Equal(t, ReasonMatched, label("o1", "x"))
	require.Equal(t, ReasonMatched, label("o2", "a"))

	for _, id := range []string{"x1", "x2", "x3", "x4"} {
		require.Equal(t, ReasonHeld, label(id, "x"))
	}
	require.Equal(t, ReasonMatched, observe("x1", "x"))
	require.Equal(t, ReasonMatched, observe("x2", "__other__"), "x went past the cap while its label waited")
	require.Equal(t, ReasonPending, observe("x3", "a"), "the label was not a's: it is invalid, and the prediction waits")
	require.Equal(t, uint64(1), s.Stats().Labels[ReasonInvalid])

	// Without OverflowModel, every model is checked.
	s = newStore(t, Options{})
	require.Equal(t, ReasonHeld, label("o3", "x"))
	require.Equal(t, ReasonPending, observe("o3", "__other__"))
	require.Equal(t, uint64(1), s.Stats().Labels[ReasonInvalid])
}

// A model's regression labels carry one offset for the store's life: the
// one SetOffset gives before any is used, else the first label's. Once an
// outcome carried it, another is refused; a restore starts a new life, in
// which the snapshot's offset holds until SetOffset gives another.
func TestLabelOffset(t *testing.T) {
	s := newStore(t, Options{})
	for i, x := range []float64{1e8 + 3, 1e8 - 1, 1e8 + 7} {
		s.Observe(t0, Prediction{ID: fmt.Sprint("a", i), Model: "first", Value: Number(x)})
		s.Observe(t0, Prediction{ID: fmt.Sprint("b", i), Model: "set", Value: Number(x)})
	}
	require.False(t, s.SetOffset("set", math.NaN()))
	require.False(t, s.SetOffset("set", math.Inf(-1)))
	require.True(t, s.SetOffset("set", 5))
	require.True(t, s.SetOffset("set", 1e8), "not used yet: the last one given holds")
	for i, y := range []float64{1e8 + 2, 1e8, 1e8 + 6} {
		o, r := s.Label(t0, Label{ID: fmt.Sprint("a", i), Value: Number(y)})
		require.Equal(t, ReasonMatched, r)
		require.Equal(t, 1e8+2, o.Offset, "the first label's")
		o, r = s.Label(t0, Label{ID: fmt.Sprint("b", i), Value: Number(y)})
		require.Equal(t, ReasonMatched, r)
		require.Equal(t, 1e8, o.Offset, "the one set")
	}
	require.False(t, s.SetOffset("first", 0), "in use")
	require.True(t, s.SetOffset("first", 1e8+2), "the one in use")
	s.Observe(t0, pred("c", "class", "x"))
	o, _ := s.Label(t0, Label{ID: "c", Value: Class("x")})
	require.Zero(t, o.Offset, "classes have none")

	var buf bytes.Buffer
	require.NoError(t, s.Snapshot(&buf))
	r, err := Restore(&buf, t0)
	require.NoError(t, err)
	require.True(t, r.SetOffset("set", -3), "a restored offset is not in use yet")
	r.Observe(t0, Prediction{ID: "d", Model: "set", Value: Number(0)})
	r.Observe(t0, Prediction{ID: "e", Model: "first", Value: Number(0)})
	o, _ = r.Label(t0, Label{ID: "d", Value: Number(1)})
	require.Equal(t, -3.0, o.Offset)
	o, _ = r.Label(t0, Label{ID: "e", Value: Number(1)})
	require.Equal(t, 1e8+2, o.Offset, "the snapshot's")
}

// SetClasses puts the listed classes first, in their order, whatever order
// the store saw classes in: the pending predictions keep their classes, a
// class pushed past MaxClasses becomes OtherClass, and a store whose first
// classes are those already is left as it is.
func TestSetClasses(t *testing.T) {
	s := newStore(t, Options{MaxClasses: 3})
	for i, c := range []string{"c", "d", "a", "e"} { // e is past the cap
		s.Observe(t0, pred(fmt.Sprint(i), "m", c))
	}
	s.Observe(t0, pred("n", "n", "z"))
	// Listed twice, empty or OtherClass: skipped.
	require.True(t, s.SetClasses("m", []string{"a", "", "b", "a", OtherClass}))
	require.False(t, s.SetClasses("m", []string{"a", "b"}), "already first")
	require.False(t, s.SetClasses("m", []string{"a"}), "already first")
	require.False(t, s.SetClasses("m", nil))
	for _, tc := range []struct {
		id, actual string
		want       Outcome
	}{
		// a, b, then c as seen; d no longer fits, nor does e.
		{id: "0", actual: "b", want: Outcome{Model: "m", Predicted: "c", PredictedIndex: 2, Actual: "b", ActualIndex: 1}},
		{id: "1", actual: "d", want: Outcome{Model: "m", Predicted: OtherClass, PredictedIndex: 3, PredictedOverflow: true, Actual: OtherClass, ActualIndex: 3, ActualOverflow: true, Correct: true}},
		{id: "2", actual: "a", want: Outcome{Model: "m", Predicted: "a", Actual: "a", Correct: true}},
		{id: "3", actual: "a", want: Outcome{Model: "m", Predicted: OtherClass, PredictedIndex: 3, PredictedOverflow: true, Actual: "a"}},
		{id: "n", actual: "z", want: Outcome{Model: "n", Predicted: "z", Actual: "z", Correct: true}},
	} {
		o, r := s.Label(t0, Label{ID: tc.id, Value: Class(tc.actual)})
		require.Equal(t, ReasonMatched, r)
		tc.want.ID, tc.want.ActualClass = tc.id, tc.actual
		require.Equal(t, tc.want, o, tc.id)
	}

	// Two stores that see the classes in opposite orders agree on them.
	for _, order := range [][]string{{"x", "y", "b", "a"}, {"a", "b", "y", "x"}} {
		s := newStore(t, Options{})
		require.True(t, s.SetClasses("m", []string{"b", "a"}))
		for i, c := range order {
			s.Observe(t0, pred(fmt.Sprint(i), "m", c))
		}
		var index []int
		for i, c := range order {
			o, _ := s.Label(t0, Label{ID: fmt.Sprint(i), Value: Class(c)})
			index = append(index, o.PredictedIndex)
		}
		got := map[string]int{}
		for i, c := range order {
			got[c] = index[i]
		}
		require.Equal(t, 1, got["a"], order)
		require.Equal(t, 0, got["b"], order)
	}
}

// A snapshot of a store given classes keeps them first: given the same
// list after a restore, the store is left as it is.
func TestSetClassesSnapshot(t *testing.T) {
	s := newStore(t, Options{})
	s.Observe(t0, pred("1", "m", "c"))
	require.True(t, s.SetClasses("m", []string{"a", "b"}))
	var buf bytes.Buffer
	require.NoError(t, s.Snapshot(&buf))
	r, err := Restore(&buf, t0)
	require.NoError(t, err)
	require.False(t, r.SetClasses("m", []string{"a", "b"}))
	o, reason := r.Label(t0, Label{ID: "1", Value: Class("b")})
	require.Equal(t, ReasonMatched, reason)
	require.Equal(t, [2]int{2, 1}, [2]int{o.PredictedIndex, o.ActualIndex})
}

// A snapshot taken while SetClasses reorders the classes names each
// pending prediction's own class: the copy's predictions and its classes
// are of one order.
func TestSetClassesDuringSnapshot(t *testing.T) {
	s := newStore(t, Options{})
	classes := []string{"a", "b", "c", "d"}
	const n = 5 * copyChunk
	for i := range n {
		s.Observe(t0, pred(fmt.Sprint(i), "m", classes[i%len(classes)]))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			s.SetClasses("m", []string{classes[k%len(classes)], classes[(k+1)%len(classes)]})
		}
	}()
	defer func() { close(stop); <-done }()
	for range 20 {
		var buf bytes.Buffer
		require.NoError(t, s.Snapshot(&buf))
		r, err := Restore(&buf, t0)
		require.NoError(t, err)
		for i := range n {
			o, reason := r.Label(t0, Label{ID: fmt.Sprint(i), Value: Class("a")})
			require.Equal(t, ReasonMatched, reason)
			require.Equal(t, classes[i%len(classes)], o.Predicted, i)
		}
	}
}
