// Package statefile writes the files in which the sidecar and alertd keep
// state across restarts atomically and durably (WriteFile), and writes and
// reads the compact binary format of the sidecar's (the label join's pending
// predictions, the shadow's): a magic string and a version byte, a body of
// varints, strings and fixed-size numbers, and a CRC-32C trailer. It knows
// nothing of what the files hold; each format is documented where it is
// written.
//
// All integers are unsigned or zig-zag signed varints (encoding/binary)
// unless stated; a string is its length then its bytes. The trailer is the
// CRC-32C (Castagnoli) of every byte before it, 4 bytes big-endian.
package statefile

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
)

// MaxCount bounds every count and index a Reader reads.
const MaxCount = 1 << 30

// flushAt is the size of the buffer a Writer writes out at once.
const flushAt = 60 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the trailer of a file whose bytes before it are body.
func Checksum(body []byte) uint32 { return crc32.Checksum(body, crcTable) }

// Writer writes a file to an io.Writer in large chunks (see Spill), keeping
// its checksum. The first write error is kept and returned by Close; every call
// after it does nothing.
type Writer struct {
	w   io.Writer
	buf []byte
	crc uint32
	err error
}

// NewWriter returns a Writer that has written the header: magic, then the
// version byte.
func NewWriter(w io.Writer, magic string, version byte) *Writer {
	e := &Writer{w: w, buf: make([]byte, 0, flushAt+4<<10)}
	e.buf = append(append(e.buf, magic...), version)
	return e
}

// Byte writes one byte.
func (e *Writer) Byte(c byte) {
	e.buf = append(e.buf, c)
}

// Uvarint writes an unsigned varint.
func (e *Writer) Uvarint(x uint64) {
	e.buf = binary.AppendUvarint(e.buf, x)
}

// Varint writes a signed varint.
func (e *Writer) Varint(x int64) {
	e.buf = binary.AppendVarint(e.buf, x)
}

// Str writes s's length, then its bytes.
func (e *Writer) Str(s string) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// Float64 writes x's bits as 8 little-endian bytes.
func (e *Writer) Float64(x float64) {
	e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(x))
}

// Spill writes out what is buffered once it is large. Writes only append
// to the buffer (so that they inline): callers call Spill after each record,
// which bounds the buffer whatever the file's size.
func (e *Writer) Spill() {
	if len(e.buf) >= flushAt {
		e.flush()
	}
}

func (e *Writer) flush() {
	if e.err != nil || len(e.buf) == 0 {
		e.buf = e.buf[:0]
		return
	}
	e.crc = crc32.Update(e.crc, crcTable, e.buf)
	_, e.err = e.w.Write(e.buf)
	e.buf = e.buf[:0]
}

// Close writes what is buffered and the trailer, and returns the first
// write error. It does not close the underlying io.Writer.
func (e *Writer) Close() error {
	e.flush()
	if e.err == nil {
		_, e.err = e.w.Write(binary.BigEndian.AppendUint32(nil, e.crc))
	}
	return e.err
}

// WriteFile writes a file at path with write, atomically and durably: to
// path.tmp in the same directory first, flushed to the disk (fsync), then
// renamed over path, and the directory flushed too. A crash or a failed
// write at any point leaves the last complete file at path, never a torn or
// empty one. Without the flush before the rename, a crash soon after it (a
// power cut, a kernel panic) can leave path naming a file whose data never
// reached the disk: XFS, and ext4 without auto_da_alloc, do that. The
// directory's flush makes the rename last; it is best effort (a file system
// may refuse to flush a directory), and without it a crash brings back the
// last complete file. What a failed call wrote is removed.
//
// Calls for one path take turns, as they share path.tmp: a periodic
// snapshot and the one at shutdown may overlap. A crash's path.tmp is
// overwritten by the next call.
func WriteFile(path string, write func(io.Writer) error) (err error) {
	mu, _ := writing.LoadOrStore(path, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close() // again, after a failed rename: the error is known
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := fsync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = fsync(d)
		d.Close()
	}
	return nil
}

// writing holds a *sync.Mutex per path WriteFile writes.
var writing sync.Map

// fsync flushes a file or a directory to the disk; tests watch it.
var fsync = (*os.File).Sync

// Reader reads a file's body. After the first error every read returns
// zero, and Err and End return that error.
type Reader struct {
	b       []byte
	err     error
	corrupt error
	version byte
}

// Open checks a whole file's header (magic, then a version from 1 to
// latest) and its trailer, and returns a Reader of its body. Its errors,
// and those of the Reader, wrap corrupt, the caller's sentinel error for a
// damaged file.
func Open(data []byte, magic string, latest byte, corrupt error) (*Reader, error) {
	if len(data) < len(magic)+1+4 || string(data[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: missing header", corrupt)
	}
	v := data[len(magic)]
	if v < 1 || v > latest {
		return nil, fmt.Errorf("%w: unsupported version %d", corrupt, v)
	}
	body, trailer := data[:len(data)-4], data[len(data)-4:]
	if Checksum(body) != binary.BigEndian.Uint32(trailer) {
		return nil, fmt.Errorf("%w: checksum mismatch (truncated or altered, %d bytes)", corrupt, len(data))
	}
	return &Reader{b: body[len(magic)+1:], corrupt: corrupt, version: v}, nil
}

// Version returns the file's version.
func (d *Reader) Version() byte { return d.version }

// Len returns the number of bytes left.
func (d *Reader) Len() int { return len(d.b) }

// Err returns the first error.
func (d *Reader) Err() error { return d.err }

// End returns the first error, or one if bytes are left over.
func (d *Reader) End() error {
	if d.err == nil && len(d.b) != 0 {
		d.Fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// Fail records that the body does not decode, unless an error came first.
func (d *Reader) Fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", d.corrupt, fmt.Sprintf(format, args...))
	}
}

// Uvarint reads an unsigned varint.
func (d *Reader) Uvarint() uint64 { return readVarint(d, binary.Uvarint) }

// Varint reads a signed varint.
func (d *Reader) Varint() int64 { return readVarint(d, binary.Varint) }

// readVarint reads one varint with read (binary.Uvarint, binary.Varint).
func readVarint[T uint64 | int64](d *Reader, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	x, n := read(d.b)
	if n <= 0 {
		d.Fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// Items reads the number of items that follow, each at least one byte
// long: a count that could not fit in what is left fails.
func (d *Reader) Items() int {
	n := d.Count()
	if n > len(d.b) {
		d.Fail("%d items past the end", n)
		return 0
	}
	return n
}

// Count reads a length or index, at most MaxCount.
func (d *Reader) Count() int {
	x := d.Uvarint()
	if x > MaxCount {
		d.Fail("count %d too large", x)
		return 0
	}
	return int(x)
}

// Byte reads one byte.
func (d *Reader) Byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.Fail("unexpected end")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// Str reads a string (not String: fmt would call it).
func (d *Reader) Str() string {
	n := d.Count()
	if d.err != nil {
		return ""
	}
	if n > len(d.b) {
		d.Fail("string of %d bytes past the end", n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// Float64 reads 8 little-endian bytes as a float64's bits.
func (d *Reader) Float64() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.Fail("unexpected end")
		return 0
	}
	x := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return x
}
