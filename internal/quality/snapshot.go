package quality

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"time"
)

// Snapshot format, version 2 (version 1, still read, has no
// MaxSegmentValues and no segments). All integers are unsigned or zig-zag
// signed varints (encoding/binary) unless stated; a string is its length
// then its bytes; times are Unix nanoseconds.
//
//	magic     "MMQS", then version byte 0x02
//	options   MaxEntries, TTL, MaxClasses, MaxRecent, MaxEarly, EarlyTTL,
//	          ExpireBatch, MaxSegmentValues
//	models    count; per model: name, its classes (an interned list: count,
//	          values with OtherClass at its index, other index + 1, 0 = none),
//	          class-list count, per list: length, names; segment count, per
//	          segment its name and its values (an interned list)
//	pending   count; per prediction, oldest first: id, model index, time,
//	          flags byte (1 numeric, 2 overflow, 4 confidence, 8 a segment
//	          value capped), value (class index, or float64 bits), with flag 4
//	          the confidence in units of 1/65535, probabilities count (0 =
//	          none), then class-list index and each probability as 8
//	          little-endian bytes of its bits, then segment count (0 = none)
//	          and per segment its index in the model's and its value's
//	held      count; per label, oldest first: id, model, numeric byte, class
//	          or float64 bits, label time, arrival time
//	recent    count; per removed id, oldest first: id, reason byte
//	trailer   CRC-32C (Castagnoli) of all bytes above, 4 bytes big-endian
//
// Counters (Stats) are not saved: they become Prometheus counters, which
// restart from zero with the process anyway.
const (
	snapshotMagic   = "MMQS"
	snapshotVersion = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by the errors Restore returns for a snapshot that is
// truncated, fails its checksum, or does not decode.
var ErrCorrupt = errors.New("corrupt quality snapshot")

// Snapshot writes the store's pending predictions, held labels and recently
// removed ids to w in the format above. It holds the store's lock while it
// writes.
func (s *Store) Snapshot(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &encoder{w: w, buf: make([]byte, 0, 64<<10)}
	e.raw([]byte(snapshotMagic))
	e.raw([]byte{snapshotVersion})
	o := s.opts
	e.uvarint(uint64(o.MaxEntries))
	e.varint(int64(o.TTL))
	e.uvarint(uint64(o.MaxClasses))
	e.uvarint(uint64(o.MaxRecent))
	e.uvarint(uint64(o.MaxEarly))
	e.varint(int64(o.EarlyTTL))
	e.uvarint(uint64(o.ExpireBatch))
	e.uvarint(uint64(o.MaxSegmentValues))

	e.uvarint(uint64(len(s.models)))
	for _, m := range s.models {
		e.str(m.name)
		e.interner(&m.classes)
		e.uvarint(uint64(len(m.sets)))
		for _, set := range m.sets {
			e.uvarint(uint64(len(set)))
			for _, c := range set {
				e.str(c)
			}
		}
		e.uvarint(uint64(len(m.segs)))
		for k := range m.segs {
			e.str(m.segNames[k])
			e.interner(&m.segs[k])
		}
	}

	e.uvarint(uint64(s.pending.n))
	for i := s.pending.head; i >= 0; i = s.pending.slots[i].next {
		en := s.pending.at(i)
		if len(e.buf) >= 60<<10 {
			e.flush()
		}
		e.str(en.id)
		e.uvarint(uint64(en.model))
		e.varint(en.ts)
		e.raw([]byte{en.flags})
		e.uvarint(en.val)
		if en.flags&flagConfidence != 0 {
			e.uvarint(uint64(en.conf))
		}
		var x extra
		if en.ext != nil {
			x = *en.ext
		}
		e.uvarint(uint64(len(x.p)))
		if x.p != nil {
			e.uvarint(uint64(x.set))
			for _, p := range x.p {
				e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(p))
			}
		}
		e.uvarint(uint64(len(x.segs)))
		for _, r := range x.segs {
			e.uvarint(uint64(r.name))
			e.uvarint(uint64(r.value))
		}
	}

	e.uvarint(uint64(s.held.n))
	for i := s.held.head; i >= 0; i = s.held.slots[i].next {
		h := s.held.at(i)
		e.flush()
		e.str(h.label.ID)
		e.str(h.label.Model)
		if h.label.Value.Numeric {
			e.raw([]byte{1})
			e.uvarint(math.Float64bits(h.label.Value.Number))
		} else {
			e.raw([]byte{0})
			e.str(h.label.Value.Class)
		}
		e.varint(h.label.Time.UnixNano())
		e.varint(h.recv)
	}

	n := len(s.recent)
	e.uvarint(uint64(n))
	for k := range n {
		t := s.recent[(s.recentNext+k)%n]
		if len(e.buf) >= 60<<10 {
			e.flush()
		}
		e.str(t.id)
		e.raw([]byte{byte(t.why)})
	}
	return e.finish()
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
// not lost uncounted. The
// whole input is read and checked before anything is built: on error, no
// Store is returned, and the error wraps ErrCorrupt if the data is bad.
func RestoreWith(r io.Reader, now time.Time, opts Options) (*Store, error) {
	return restore(r, now, &opts)
}

func restore(r io.Reader, now time.Time, opts *Options) (*Store, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("couldn't read quality snapshot: %w", err)
	}
	if len(data) < len(snapshotMagic)+1+4 || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: missing header", ErrCorrupt)
	}
	v := data[len(snapshotMagic)]
	if v != 1 && v != snapshotVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, v)
	}
	body, trailer := data[:len(data)-4], data[len(data)-4:]
	if got, want := crc32.Checksum(body, crcTable), binary.BigEndian.Uint32(trailer); got != want {
		return nil, fmt.Errorf("%w: checksum mismatch (truncated or altered, %d bytes)", ErrCorrupt, len(data))
	}
	d := &decoder{b: body[len(snapshotMagic)+1:], version: v}
	s, err := d.store(now, opts)
	if err != nil {
		return nil, err
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

func (d *decoder) store(now time.Time, override *Options) (*Store, error) {
	o := Options{
		MaxEntries:  d.count(),
		TTL:         time.Duration(d.varint()),
		MaxClasses:  d.count(),
		MaxRecent:   d.count(),
		MaxEarly:    d.count(),
		EarlyTTL:    time.Duration(d.varint()),
		ExpireBatch: d.count(),
	}
	if d.version >= 2 {
		o.MaxSegmentValues = d.count()
	}
	if o.MaxEarly == 0 {
		o.MaxEarly = -1 // saved after defaults: 0 means holding was disabled
	}
	if d.err != nil {
		return nil, d.err
	}
	if override != nil {
		o = *override
	}
	s, err := New(o)
	if err != nil {
		return nil, fmt.Errorf("couldn't restore quality snapshot: %w", err)
	}

	nModels := d.items()
	for range nModels {
		if d.err != nil {
			return nil, d.err
		}
		name := d.str()
		if _, dup := s.modelIndex[name]; dup || name == "" {
			d.fail("bad model %q", name)
			break
		}
		_, m := s.model(name)
		m.classes = d.interner("class")
		for range d.items() {
			k := d.items()
			set := make([]string, 0, min(k, 1024))
			for range k {
				if c := d.str(); d.err == nil {
					set = append(set, c)
				}
			}
			m.sets = append(m.sets, set)
		}
		if d.version >= 2 {
			for range d.items() {
				name := d.str()
				if slices.Contains(m.segNames, name) || len(m.segNames) >= MaxSegmentNames {
					d.fail("bad segment %q", name)
					break
				}
				m.segNames = append(m.segNames, name)
				m.segs = append(m.segs, d.interner("segment value"))
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}

	// Pending predictions and recent ids are read into slices first: recent
	// ids are restored before the predictions that expire during restore.
	var pending []entry
	for range d.items() {
		if d.err != nil {
			break
		}
		e := entry{id: d.str(), model: uint32(d.count()), ts: d.varint(), flags: d.byte(), val: d.uvarint()}
		if int(e.model) >= len(s.models) || e.id == "" {
			d.fail("bad prediction %q", e.id)
			break
		}
		m := s.models[e.model]
		if e.flags&^(flagNumeric|flagOverflow|flagConfidence|flagSegmentOverflow) != 0 || (e.flags&flagNumeric == 0 && e.val >= uint64(len(m.classes.values))) {
			d.fail("bad value of prediction %q", e.id)
			break
		}
		if e.flags&flagConfidence != 0 {
			c := d.uvarint()
			if c > confScale || e.flags&flagNumeric != 0 {
				d.fail("bad confidence of prediction %q", e.id)
				break
			}
			e.conf = uint16(c)
		}
		if k := d.items(); k > 0 {
			set := d.count()
			if set >= len(m.sets) || len(m.sets[set]) != k || len(d.b) < 8*k {
				d.fail("bad probabilities of prediction %q", e.id)
				break
			}
			p := make([]float64, k)
			for j := range p {
				p[j] = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
				d.b = d.b[8:]
			}
			e.ext = &extra{set: uint32(set), p: p}
		}
		if d.version >= 2 {
			if k := d.items(); k > 0 {
				if e.ext == nil {
					e.ext = &extra{}
				}
				e.ext.segs = make([]segRef, k)
				for j := range k {
					r := segRef{name: uint32(d.count()), value: uint32(d.count())}
					if int(r.name) >= len(m.segs) || int(r.value) >= len(m.segs[r.name].values) {
						d.fail("bad segments of prediction %q", e.id)
						break
					}
					e.ext.segs[j] = r
				}
			}
		}
		pending = append(pending, e)
	}
	var held []heldLabel
	for range d.items() {
		if d.err != nil {
			break
		}
		l := Label{ID: d.str(), Model: d.str()}
		if d.byte() == 1 {
			l.Value = Number(math.Float64frombits(d.uvarint()))
		} else {
			l.Value = Class(d.str())
		}
		l.Time = time.Unix(0, d.varint())
		held = append(held, heldLabel{label: l, recv: d.varint()})
	}
	var recent []tomb
	for range d.items() {
		if d.err != nil {
			break
		}
		t := tomb{id: d.str(), why: Reason(d.byte())}
		if t.why != ReasonMatched && t.why != ReasonExpired && t.why != ReasonEvicted {
			d.fail("bad reason %d", t.why)
		}
		recent = append(recent, t)
	}
	if d.err != nil {
		return nil, d.err
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
		s.heldIndex[h.label.ID] = s.held.push(h)
	}
	return s, nil
}

type encoder struct {
	w   io.Writer
	buf []byte
	crc uint32
	err error
}

func (e *encoder) raw(b []byte) {
	e.buf = append(e.buf, b...)
}

func (e *encoder) uvarint(x uint64) { e.buf = binary.AppendUvarint(e.buf, x) }
func (e *encoder) varint(x int64)   { e.buf = binary.AppendVarint(e.buf, x) }

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) flush() {
	if e.err != nil || len(e.buf) == 0 {
		return
	}
	e.crc = crc32.Update(e.crc, crcTable, e.buf)
	_, e.err = e.w.Write(e.buf)
	e.buf = e.buf[:0]
}

func (e *encoder) finish() error {
	e.flush()
	if e.err == nil {
		_, e.err = e.w.Write(binary.BigEndian.AppendUint32(nil, e.crc))
	}
	if e.err != nil {
		return fmt.Errorf("couldn't write quality snapshot: %w", e.err)
	}
	return nil
}

// decoder reads from b; after the first error every read returns zero.
type decoder struct {
	b       []byte
	err     error
	version byte
}

// interner writes an interned list: its values, OtherClass at its index,
// and that index + 1 (0 = none).
func (e *encoder) interner(in *interner) {
	e.uvarint(uint64(len(in.values)))
	for _, v := range in.values {
		e.str(v)
	}
	e.uvarint(uint64(in.other + 1))
}

// interner reads an interned list of what (for errors).
func (d *decoder) interner(what string) interner {
	in := newInterner()
	for range d.items() {
		if v := d.str(); d.err == nil {
			in.values = append(in.values, v)
		}
	}
	in.other = int64(d.count()) - 1
	if in.other >= int64(len(in.values)) || (in.other >= 0 && in.values[in.other] != OtherClass) {
		d.fail("bad other %s index %d", what, in.other)
		return in
	}
	for i, v := range in.values {
		if int64(i) == in.other {
			continue
		}
		if _, dup := in.index[v]; dup || v == OtherClass {
			d.fail("bad %s %q", what, v)
			return in
		}
		in.index[v] = uint32(i)
	}
	return in
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// items reads the number of items that follow, each at least one byte long.
func (d *decoder) items() int {
	n := d.count()
	if n > len(d.b) {
		d.fail("%d items past the end", n)
		return 0
	}
	return n
}

// count reads a length or index, bounded by maxCount.
func (d *decoder) count() int {
	x := d.uvarint()
	if x > maxCount {
		d.fail("count %d too large", x)
		return 0
	}
	return int(x)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("unexpected end")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	if n > len(d.b) {
		d.fail("string of %d bytes past the end", n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
