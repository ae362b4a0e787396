package quality

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/modelmon/modelmon/internal/statefile"
)

// Snapshot format, version 4 (version 3, still read, has no label offsets;
// version 2 no held label retries either; version 1 no MaxSegmentValues
// and no segments), in package statefile's encoding: all
// integers are unsigned or zig-zag signed varints (encoding/binary) unless
// stated; a string is its length then its bytes; times are Unix
// nanoseconds.
//
//	magic     "MMQS", then version byte 0x04
//	options   MaxEntries, TTL, MaxClasses, MaxRecent, MaxEarly, EarlyTTL,
//	          ExpireBatch, MaxSegmentValues
//	models    count; per model: name, its classes (an interned list: count,
//	          values with OtherClass at its index, other index + 1, 0 = none),
//	          class-list count, per list: length, names; segment count, per
//	          segment its name and its values (an interned list); a byte,
//	          1 when it has a label offset (SetOffset), then the offset as
//	          8 little-endian bytes of its bits
//	pending   count; per prediction, oldest first: id, model index, time,
//	          flags byte (1 numeric, 2 overflow, 4 confidence, 8 a segment
//	          value capped), value (class index, or float64 bits), with flag 4
//	          the confidence in units of 1/65535, probabilities count (0 =
//	          none), then class-list index and each probability as 8
//	          little-endian bytes of its bits, then segment count (0 = none)
//	          and per segment its index in the model's and its value's
//	held      count; per label, oldest first: id, model, numeric byte, class
//	          or float64 bits, label time, arrival time, retries (0 = none,
//	          HeldLabel.Retries), retry time (0 = none)
//	recent    count; per removed id, oldest first: id, reason byte
//	trailer   CRC-32C (Castagnoli) of all bytes above, 4 bytes big-endian
//
// Counters (Stats) are not saved: they become Prometheus counters, which
// restart from zero with the process anyway.
const (
	snapshotMagic   = "MMQS"
	snapshotVersion = 4
)

// ErrCorrupt is wrapped by the errors Restore returns for a snapshot that is
// truncated, fails its checksum, or does not decode.
var ErrCorrupt = errors.New("corrupt quality snapshot")

// Snapshot writes the store's pending predictions, held labels and recently
// removed ids to w in the format above. It copies them (snapshotCopy) and
// encodes the copy, so that it holds the store's lock only while copying, a
// chunk at a time: Observe and Label wait for one chunk at most.
func (s *Store) Snapshot(w io.Writer) error {
	return s.snapshotCopy().write(w)
}

// write writes the copy in the format above.
func (c *storeCopy) write(w io.Writer) error {
	e := statefile.NewWriter(w, snapshotMagic, snapshotVersion)
	o := c.opts
	e.Uvarint(uint64(o.MaxEntries))
	e.Varint(int64(o.TTL))
	e.Uvarint(uint64(o.MaxClasses))
	e.Uvarint(uint64(o.MaxRecent))
	e.Uvarint(uint64(o.MaxEarly))
	e.Varint(int64(o.EarlyTTL))
	e.Uvarint(uint64(o.ExpireBatch))
	e.Uvarint(uint64(o.MaxSegmentValues))

	e.Uvarint(uint64(len(c.models)))
	for i := range c.models {
		m := &c.models[i]
		e.Str(m.name)
		writeInterner(e, &m.classes)
		e.Uvarint(uint64(len(m.sets)))
		for _, set := range m.sets {
			e.Uvarint(uint64(len(set)))
			for _, class := range set {
				e.Str(class)
			}
		}
		e.Uvarint(uint64(len(m.segs)))
		for k := range m.segs {
			e.Str(m.segNames[k])
			writeInterner(e, &m.segs[k])
		}
		if m.hasOffset {
			e.Byte(1)
			e.Float64(m.offset)
		} else {
			e.Byte(0)
		}
	}

	e.Uvarint(uint64(len(c.pending)))
	for i := range c.pending {
		en := &c.pending[i]
		e.Spill()
		e.Str(en.id)
		e.Uvarint(uint64(en.model))
		e.Varint(en.ts)
		e.Byte(en.flags)
		e.Uvarint(en.val)
		if en.flags&flagConfidence != 0 {
			e.Uvarint(uint64(en.conf))
		}
		var x extra
		if en.ext != nil {
			x = *en.ext
		}
		e.Uvarint(uint64(len(x.p)))
		if x.p != nil {
			e.Uvarint(uint64(x.set))
			for _, p := range x.p {
				e.Float64(p)
			}
		}
		e.Uvarint(uint64(len(x.segs)))
		for _, r := range x.segs {
			e.Uvarint(uint64(r.name))
			e.Uvarint(uint64(r.value))
		}
	}

	e.Uvarint(uint64(len(c.held)))
	for i := range c.held {
		h := &c.held[i]
		e.Spill()
		e.Str(h.label.ID)
		e.Str(h.label.Model)
		if h.label.Value.Numeric {
			e.Byte(1)
			e.Uvarint(math.Float64bits(h.label.Value.Number))
		} else {
			e.Byte(0)
			e.Str(h.label.Value.Class)
		}
		e.Varint(h.label.Time.UnixNano())
		e.Varint(h.recv)
		e.Uvarint(uint64(h.retries))
		e.Varint(h.retryAt)
	}

	e.Uvarint(uint64(len(c.recent)))
	for _, t := range c.recent {
		e.Spill()
		e.Str(t.id)
		e.Byte(byte(t.why))
	}
	if err := e.Close(); err != nil {
		return fmt.Errorf("couldn't write quality snapshot: %w", err)
	}
	return nil
}

// Restore reads a snapshot written by Snapshot into a new Store with the
// snapshot's options. See RestoreWith.
func Restore(r io.Reader, now time.Time) (*Store, error) {
	return restore(r, now, nil)
}

// RestoreWith reads a snapshot into a new Store bounded by opts rather than
// the snapshot's options; if they are tighter, the oldest entries are evicted
// (and counted) as they would be live.
//
// Predictions already expired at now are dropped and remembered as such,
// so their labels report expired. Held labels past their EarlyTTL are kept:
// the next Expire (or TakeExpiredHeld) ends them, so they are counted (or
// asked of the other replicas) as they would have been without the restart,
// not lost uncounted; those whose end was put off keep their Retries and
// Retry (ReturnHeld). The whole input is read and checked before anything
// is built: on error, no Store is returned, and the error wraps ErrCorrupt
// if the data is bad.
func RestoreWith(r io.Reader, now time.Time, opts Options) (*Store, error) {
	return restore(r, now, &opts)
}

func restore(r io.Reader, now time.Time, opts *Options) (*Store, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("couldn't read quality snapshot: %w", err)
	}
	d, err := statefile.Open(data, snapshotMagic, snapshotVersion, ErrCorrupt)
	if err != nil {
		return nil, err
	}
	s, err := restoreStore(d, now, opts)
	if err != nil {
		return nil, err
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	return s, nil
}

func restoreStore(d *statefile.Reader, now time.Time, override *Options) (*Store, error) {
	o := Options{
		MaxEntries:  d.Count(),
		TTL:         time.Duration(d.Varint()),
		MaxClasses:  d.Count(),
		MaxRecent:   d.Count(),
		MaxEarly:    d.Count(),
		EarlyTTL:    time.Duration(d.Varint()),
		ExpireBatch: d.Count(),
	}
	if d.Version() >= 2 {
		o.MaxSegmentValues = d.Count()
	}
	if o.MaxEarly == 0 {
		o.MaxEarly = -1 // saved after defaults: 0 means holding was disabled
	}
	if d.Err() != nil {
		return nil, d.Err()
	}
	if override != nil {
		o = *override
	}
	s, err := New(o)
	if err != nil {
		return nil, fmt.Errorf("couldn't restore quality snapshot: %w", err)
	}

	nModels := d.Items()
	for range nModels {
		if d.Err() != nil {
			return nil, d.Err()
		}
		name := d.Str()
		if _, dup := s.modelIndex[name]; dup || name == "" {
			d.Fail("bad model %q", name)
			break
		}
		_, m := s.model(name)
		m.classes = readInterner(d, "class")
		for range d.Items() {
			k := d.Items()
			set := make([]string, 0, min(k, 1024))
			for range k {
				if c := d.Str(); d.Err() == nil {
					set = append(set, c)
				}
			}
			m.sets = append(m.sets, set)
		}
		if d.Version() >= 2 {
			for range d.Items() {
				name := d.Str()
				if slices.Contains(m.segNames, name) || len(m.segNames) >= MaxSegmentNames {
					d.Fail("bad segment %q", name)
					break
				}
				m.segNames = append(m.segNames, name)
				m.segs = append(m.segs, readInterner(d, "segment value"))
			}
		}
		if d.Version() >= 4 {
			switch d.Byte() {
			case 0:
			case 1:
				m.offset, m.hasOffset = d.Float64(), true
				if math.IsNaN(m.offset) || math.IsInf(m.offset, 0) {
					d.Fail("bad label offset of model %q", name)
				}
			default:
				d.Fail("bad label offset of model %q", name)
			}
		}
	}
	if d.Err() != nil {
		return nil, d.Err()
	}

	// Pending predictions and recent ids are read into slices first: recent
	// ids are restored before the predictions that expire during restore.
	var pending []entry
	for range d.Items() {
		if d.Err() != nil {
			break
		}
		e := entry{id: d.Str(), model: uint32(d.Count()), ts: d.Varint(), flags: d.Byte(), val: d.Uvarint()}
		if int(e.model) >= len(s.models) || e.id == "" {
			d.Fail("bad prediction %q", e.id)
			break
		}
		m := s.models[e.model]
		if e.flags&^(flagNumeric|flagOverflow|flagConfidence|flagSegmentOverflow) != 0 || (e.flags&flagNumeric == 0 && e.val >= uint64(len(m.classes.values))) {
			d.Fail("bad value of prediction %q", e.id)
			break
		}
		if e.flags&flagConfidence != 0 {
			c := d.Uvarint()
			if c > confScale || e.flags&flagNumeric != 0 {
				d.Fail("bad confidence of prediction %q", e.id)
				break
			}
			e.conf = uint16(c)
		}
		if k := d.Items(); k > 0 {
			set := d.Count()
			if set >= len(m.sets) || len(m.sets[set]) != k || d.Len() < 8*k {
				d.Fail("bad probabilities of prediction %q", e.id)
				break
			}
			p := make([]float64, k)
			for j := range p {
				p[j] = d.Float64()
			}
			e.ext = &extra{set: uint32(set), p: p}
		}
		if d.Version() >= 2 {
			if k := d.Items(); k > 0 {
				if e.ext == nil {
					e.ext = &extra{}
				}
				e.ext.segs = make([]segRef, k)
				for j := range k {
					r := segRef{name: uint32(d.Count()), value: uint32(d.Count())}
					if int(r.name) >= len(m.segs) || int(r.value) >= len(m.segs[r.name].values) {
						d.Fail("bad segments of prediction %q", e.id)
						break
					}
					e.ext.segs[j] = r
				}
			}
		}
		pending = append(pending, e)
	}
	var held []heldLabel
	for range d.Items() {
		if d.Err() != nil {
			break
		}
		l := Label{ID: d.Str(), Model: d.Str()}
		if d.Byte() == 1 {
			l.Value = Number(math.Float64frombits(d.Uvarint()))
		} else {
			l.Value = Class(d.Str())
		}
		l.Time = time.Unix(0, d.Varint())
		h := heldLabel{label: l, recv: d.Varint()}
		if d.Version() >= 3 {
			r := d.Uvarint()
			if r > MaxHeldRetries {
				d.Fail("bad retries of held label %q", l.ID)
				break
			}
			h.retries, h.retryAt = uint8(r), d.Varint()
		}
		held = append(held, h)
	}
	var recent []tomb
	for range d.Items() {
		if d.Err() != nil {
			break
		}
		t := tomb{id: d.Str(), why: Reason(d.Byte())}
		if t.why != ReasonMatched && t.why != ReasonExpired && t.why != ReasonEvicted {
			d.Fail("bad reason %d", t.why)
		}
		recent = append(recent, t)
	}
	if d.Err() != nil {
		return nil, d.Err()
	}

	for _, t := range recent {
		s.remember(t.id, t.why)
	}
	cutoff := now.UnixNano() - int64(s.opts.TTL)
	for _, e := range pending {
		if _, dup := s.index[e.id]; dup {
			return nil, fmt.Errorf("%w: duplicate prediction %q", ErrCorrupt, e.id)
		}
		if e.ts <= cutoff {
			s.remember(e.id, ReasonExpired)
			continue
		}
		if s.pending.n >= s.opts.MaxEntries {
			s.removePending(s.pending.head, ReasonEvicted)
			s.stats.evicted++
		}
		s.index[e.id] = s.pending.push(e)
	}
	for _, h := range held {
		if _, dup := s.heldIndex[h.label.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate held label %q", ErrCorrupt, h.label.ID)
		}
		if s.opts.MaxEarly == 0 {
			continue
		}
		if s.held.n >= s.opts.MaxEarly {
			s.removeHeld(s.held.head)
			s.stats.heldEvicted++
		}
		s.pushHeld(h, false)
	}
	return s, nil
}

// writeInterner writes an interned list: its values, OtherClass at its
// index, and that index + 1 (0 = none).
func writeInterner(e *statefile.Writer, in *interner) {
	e.Uvarint(uint64(len(in.values)))
	for _, v := range in.values {
		e.Str(v)
	}
	e.Uvarint(uint64(in.other + 1))
}

// readInterner reads an interned list of what (for errors).
func readInterner(d *statefile.Reader, what string) interner {
	in := newInterner()
	for range d.Items() {
		if v := d.Str(); d.Err() == nil {
			in.values = append(in.values, v)
		}
	}
	in.other = int64(d.Count()) - 1
	if in.other >= int64(len(in.values)) || (in.other >= 0 && in.values[in.other] != OtherClass) {
		d.Fail("bad other %s index %d", what, in.other)
		return in
	}
	for i, v := range in.values {
		if int64(i) == in.other {
			continue
		}
		if _, dup := in.index[v]; dup || v == OtherClass {
			d.Fail("bad %s %q", what, v)
			return in
		}
		in.index[v] = uint32(i)
	}
	return in
}
