package escalate

import (
	"container/heap"
	"time"
)

// due is an incident's place in the engine's queue: when Tick next has to
// look at it (wake).
type due struct {
	at time.Time
	id string
	// index is its index in the queue; -1 while out of it.
	index int
}

// dueQueue is a priority queue (container/heap) of incidents by the time
// Tick next has to look at them, then by id, so that its order is
// deterministic.
type dueQueue []*due

func (q dueQueue) Len() int { return len(q) }

func (q dueQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].id < q[j].id
}

func (q dueQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}

func (q *dueQueue) Push(x any) {
	d := x.(*due)
	d.index = len(*q)
	*q = append(*q, d)
}

func (q *dueQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = nil
	d.index = -1
	*q = old[:len(old)-1]
	return d
}

// wake returns when Tick next has to look at the incident: when its
// snooze ends, its acknowledgement times out, its next step is due, or,
// resolved, its retention ends; false when nothing will happen to it
// without an event. advance changes nothing of an incident before then.
func (e *Engine) wake(in *Incident) (time.Time, bool) {
	switch {
	case in.Resolved:
		if e.opts.Retention > 0 {
			return in.ResolvedAt.Add(e.opts.Retention), true
		}
		return time.Time{}, false
	case !in.SnoozedUntil.IsZero():
		return in.SnoozedUntil, true
	case in.Acked:
		return in.AckUntil, !in.AckUntil.IsZero()
	}
	p := e.byName[in.Policy]
	if p == nil || in.NextAt.IsZero() {
		return time.Time{}, false
	}
	if in.Step >= len(p.Steps) {
		// A chain past its end (its policy lost steps) has its due
		// time cleared at the next Tick.
		return time.Time{}, true
	}
	return in.NextAt, true
}

// schedule puts the incident in the queue at its wake time, moves it
// there, or takes it out when nothing will happen to it. Every change to
// an incident outside Tick ends with it.
func (e *Engine) schedule(in *Incident) {
	at, ok := e.wake(in)
	d := e.dueOf[in.ID]
	switch {
	case !ok:
		if d != nil {
			if d.index >= 0 {
				heap.Remove(&e.due, d.index)
			}
			delete(e.dueOf, in.ID)
		}
	case d == nil:
		d = &due{at: at, id: in.ID}
		e.dueOf[in.ID] = d
		heap.Push(&e.due, d)
	case d.index < 0:
		d.at = at
		heap.Push(&e.due, d)
	case !d.at.Equal(at):
		d.at = at
		heap.Fix(&e.due, d.index)
	}
}

// unschedule takes a forgotten incident out of the queue.
func (e *Engine) unschedule(id string) {
	if d := e.dueOf[id]; d != nil {
		if d.index >= 0 {
			heap.Remove(&e.due, d.index)
		}
		delete(e.dueOf, id)
	}
}

// reschedule rebuilds the queue from every incident, after Restore and
// SetPolicies, which change when any incident is due.
func (e *Engine) reschedule() {
	e.due = e.due[:0]
	clear(e.dueOf)
	clear(e.expired)
	for _, in := range e.incidents {
		if at, ok := e.wake(in); ok {
			d := &due{at: at, id: in.ID, index: len(e.due)}
			e.due = append(e.due, d)
			e.dueOf[in.ID] = d
		}
	}
	heap.Init(&e.due)
}
