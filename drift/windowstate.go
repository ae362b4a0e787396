package drift

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// windowStateVersion is the first byte of what MarshalBinary writes.
const windowStateVersion = 1

// ErrWindowMismatch is wrapped by the errors UnmarshalBinary returns for the
// state of a window with other bins, spans or sub-windows.
var ErrWindowMismatch = errors.New("window state of other bins or spans")

// MarshalBinary encodes w's sliding windows, each span's sub-windows with
// their counts, missing values and tail sums, so that a Window of the same
// feature and options can take them up again (UnmarshalBinary), for example
// after a restart. The cumulative counts (Totals) are left out: they back
// Prometheus counters, which start again at zero with the process.
//
// The format, all integers varints (encoding/binary): the version byte 1,
// the number of fine bins, sub-windows and spans; per span its length in
// nanoseconds, then per sub-window its epoch (its start over the
// sub-window's length; math.MinInt64 when unused), its missing values, its
// four tail sums as float64 bits, and its counts.
func (w *Window) MarshalBinary() ([]byte, error) {
	b := []byte{windowStateVersion}
	b = binary.AppendUvarint(b, uint64(w.nb))
	b = binary.AppendUvarint(b, uint64(w.sub))
	b = binary.AppendUvarint(b, uint64(len(w.spans)))
	for k := range w.spans {
		s := &w.spans[k]
		b = binary.AppendUvarint(b, uint64(s.length))
		for j := range s.slots {
			sl := &s.slots[j]
			b = binary.AppendVarint(b, sl.epoch)
			b = binary.AppendUvarint(b, uint64(sl.missing))
			for _, x := range sl.tails {
				b = binary.AppendUvarint(b, math.Float64bits(x))
			}
			for _, c := range sl.counts {
				b = binary.AppendUvarint(b, uint64(c))
			}
		}
	}
	return b, nil
}

// UnmarshalBinary replaces w's sliding windows with those MarshalBinary
// encoded from a Window of the same bins, spans and sub-windows; its
// cumulative counts are kept. Sub-windows that have expired since are
// dropped as time moves on, as they would have been. On error w is
// unchanged; state of another window's shape wraps ErrWindowMismatch.
func (w *Window) UnmarshalBinary(data []byte) error {
	d := stateDecoder{b: data}
	if v := d.byte(); d.err == nil && v != windowStateVersion {
		return fmt.Errorf("unsupported window state version %d", v)
	}
	nb, sub, nspans := d.uvarint(), d.uvarint(), d.uvarint()
	if d.err != nil {
		return d.err
	}
	if nb != uint64(w.nb) || sub != uint64(w.sub) || nspans != uint64(len(w.spans)) {
		return fmt.Errorf("%w: %d bins, %d sub-windows and %d spans, want %d, %d and %d",
			ErrWindowMismatch, nb, sub, nspans, w.nb, w.sub, len(w.spans))
	}
	slots := make([][]slot, len(w.spans))
	counts := make([]uint32, len(w.spans)*w.sub*w.nb)
	for k := range w.spans {
		if l := time.Duration(d.uvarint()); d.err == nil && l != w.spans[k].length {
			return fmt.Errorf("%w: span %d is %v, want %v", ErrWindowMismatch, k, l, w.spans[k].length)
		}
		slots[k] = make([]slot, w.sub)
		n := int64(w.sub)
		for j := range slots[k] {
			sl := &slots[k][j]
			sl.epoch = d.varint()
			sl.missing = d.uint32()
			for i := range sl.tails {
				sl.tails[i] = math.Float64frombits(d.uvarint())
			}
			sl.counts, counts = counts[:w.nb:w.nb], counts[w.nb:]
			for i := range sl.counts {
				sl.counts[i] = d.uint32()
			}
			if d.err == nil && sl.epoch != math.MinInt64 && floorMod(sl.epoch, n) != int64(j) {
				return fmt.Errorf("corrupt window state: sub-window %d of span %d has epoch %d", j, k, sl.epoch)
			}
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) > 0 {
		return fmt.Errorf("corrupt window state: %d bytes after its end", len(d.b))
	}
	// A span in use has its sub-windows' epochs in a row that ends at the
	// current one, as advance leaves them; one not in use has none.
	latest := make([]int64, len(w.spans))
	for k := range slots {
		latest[k] = math.MinInt64
		for _, sl := range slots[k] {
			latest[k] = max(latest[k], sl.epoch)
		}
		n := int64(w.sub)
		for j, sl := range slots[k] {
			if latest[k] != math.MinInt64 && sl.epoch <= latest[k]-n {
				return fmt.Errorf("corrupt window state: sub-window %d of span %d is out of its ring", j, k)
			}
		}
	}
	for k := range w.spans {
		s := &w.spans[k]
		s.slots = slots[k]
		s.valid, s.start, s.end, s.counts = false, 0, 0, nil
		if latest := latest[k]; latest != math.MinInt64 {
			s.epoch, s.valid = latest, true
			s.cur = int(floorMod(latest, int64(len(s.slots))))
			s.counts = s.slots[s.cur].counts
			s.start = latest * s.sub
			s.end = s.start + s.sub
		}
	}
	w.sync()
	return nil
}

// stateDecoder reads varints, remembering the first error.
type stateDecoder struct {
	b   []byte
	err error
}

var errTruncatedState = errors.New("corrupt window state: truncated")

func (d *stateDecoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errTruncatedState
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *stateDecoder) uvarint() uint64 { return decodeVarint(d, binary.Uvarint) }

func (d *stateDecoder) varint() int64 { return decodeVarint(d, binary.Varint) }

// decodeVarint reads one varint with read (binary.Uvarint, binary.Varint).
func decodeVarint[T uint64 | int64](d *stateDecoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	x, n := read(d.b)
	if n <= 0 {
		d.err = errTruncatedState
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *stateDecoder) uint32() uint32 {
	x := d.uvarint()
	if x > math.MaxUint32 && d.err == nil {
		d.err = errors.New("corrupt window state: a count out of range")
	}
	return uint32(x)
}
