package quality

// queue is a doubly linked list threaded through a slice of slots, in
// insertion order, with a free list: push, remove and front are O(1), removed
// slots are reused, and the slice never holds more slots than the most values
// ever live at once. It is what lets the store evict the oldest entry and drop
// a matched one from the middle without holes or per-entry allocations.
type queue[T any] struct {
	slots      []slot[T]
	head, tail int32 // oldest, newest; -1 when empty
	free       int32 // first free slot; -1 when none
	n          int

	// cursor is the slot a copy (copyTo) goes on from, -1 once it has
	// passed the newest; copying says whether one is under way.
	cursor  int32
	copying bool
}

type slot[T any] struct {
	v          T
	prev, next int32
}

func newQueue[T any]() queue[T] {
	return queue[T]{head: -1, tail: -1, free: -1, cursor: -1}
}

// push appends v as the newest value and returns its slot.
func (q *queue[T]) push(v T) int32 { return q.insert(v, q.tail, -1) }

// pushFront inserts v as the oldest value and returns its slot.
func (q *queue[T]) pushFront(v T) int32 { return q.insert(v, -1, q.head) }

// insert links v between the slots prev and next, adjacent (-1 is either
// end), in a free slot or a new one, and returns its slot.
func (q *queue[T]) insert(v T, prev, next int32) int32 {
	s := slot[T]{v: v, prev: prev, next: next}
	var i int32
	if q.free >= 0 {
		i = q.free
		q.free = q.slots[i].next
		q.slots[i] = s
	} else {
		i = int32(len(q.slots))
		q.slots = append(q.slots, s)
	}
	if prev >= 0 {
		q.slots[prev].next = i
	} else {
		q.head = i
	}
	if next >= 0 {
		q.slots[next].prev = i
	} else {
		q.tail = i
		if q.copying && q.cursor < 0 {
			q.cursor = i // the copy, past the newest, reaches the new one
		}
	}
	q.n++
	return i
}

// remove unlinks slot i and returns its value. The slot's value is zeroed so
// that it retains no memory.
func (q *queue[T]) remove(i int32) T {
	s := &q.slots[i]
	v := s.v
	if i == q.cursor {
		q.cursor = s.next // the copy goes on from the next
	}
	if s.prev >= 0 {
		q.slots[s.prev].next = s.next
	} else {
		q.head = s.next
	}
	if s.next >= 0 {
		q.slots[s.next].prev = s.prev
	} else {
		q.tail = s.prev
	}
	var zero T
	*s = slot[T]{v: zero, prev: -1, next: q.free}
	q.free = i
	q.n--
	return v
}

// at returns a pointer to the value in slot i.
func (q *queue[T]) at(i int32) *T { return &q.slots[i].v }

// startCopy starts a copy of the values, oldest first, a chunk at a time
// (copyTo), which the queue may change between: from the oldest value now.
func (q *queue[T]) startCopy() {
	q.cursor, q.copying = q.head, true
}

// copyTo appends to out at most n values from the copy's cursor on, and
// moves the cursor past them; it reports whether the copy reached the
// newest value, and ends it then. A value removed before the copy reaches
// it is not in it (remove moves the cursor past one it points to); one
// pushed is, once the copy reaches it; one pushed at the front is not.
func (q *queue[T]) copyTo(out []T, n int) ([]T, bool) {
	i := q.cursor
	for ; i >= 0 && n > 0; n-- {
		out = append(out, q.slots[i].v)
		i = q.slots[i].next
	}
	q.cursor = i
	if i < 0 {
		q.copying = false
	}
	return out, i < 0
}
