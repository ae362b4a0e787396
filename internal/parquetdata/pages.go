package parquetdata

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/pierrec/lz4/v4"
)

// maxPageSize bounds a page's size once decompressed. Writers keep pages
// near 1 MiB.
const maxPageSize = 256 << 20

// headerBuffer is the buffer page headers are read through.
const headerBuffer = 512

// plainFile is a Parquet file as parquet-go reads it here: the file's pages
// stored uncompressed, each decompressed by this package when parquet-go
// reads it, and its footer saying so (codec UNCOMPRESSED, the offsets and
// sizes of the pages as stored here, no page index or bloom filters).
//
// parquet-go trusts what a damaged file says: it allocates a page's stated
// size, and its LZ4 codec doubles its buffer for as long as a page fails
// to decode, until the process runs out of memory. So newPlainFile reads
// every page header first, and rejects a file whose chunks lie outside it,
// or one of whose pages says it decompresses to more than maxPageSize; and
// the pages are decompressed here, each within the size it states, or the
// read fails. Checking the pages up front by decompressing them, before
// parquet-go decompressed them again, cost every page two decompressions;
// here each page is decompressed once, when parquet-go reads it.
//
// ReadAt is safe for concurrent use, as io.ReaderAt requires; parquet-go
// reads the chunks of a row group side by side, each from its start to its
// end, so a chunk's last decompressed page is kept until the next one is
// read.
type plainFile struct {
	r    io.ReaderAt
	size int64 // of the plain file
	md   format.FileMetaData
	segs []segment // in offset order, covering [0, size)

	mu    sync.Mutex
	dec   decoders
	comp  []byte     // the compressed bytes of the page being decompressed
	cache []pageData // by column index: its page decompressed last
	// decompressed counts the pages decompressed, for tests.
	decompressed int
}

// segment is a range of the plain file: bytes of its own (the magic
// number, a page header, the footer), or a page of the original.
type segment struct {
	off, end int64 // in the plain file
	lit      []byte
	page     *page
}

// page is a page of the original file.
type page struct {
	col    string // the column's path, for errors
	column int    // its index, the cache slot
	src    int64  // offset of its data in the original file
	size   int64  // of its data there
	raw    bool   // stored uncompressed: read as it is
	codec  format.CompressionCodec
	levels int64  // the levels before the compressed values of a v2 page, stored uncompressed
	plain  int64  // its size decompressed, levels included
	crc    uint32 // of its data as stored, if hasCRC
	hasCRC bool
}

type pageData struct {
	page *page
	buf  []byte
}

// pageError is a page that does not decompress as its header says.
type pageError struct {
	col string
	err error
}

func (e *pageError) Error() string { return fmt.Sprintf("column %q: %v", e.col, e.err) }
func (e *pageError) Unwrap() error { return e.err }

// newPlainFile reads the page headers of every column chunk of the file r
// of the given size, whose metadata is md.
func newPlainFile(r io.ReaderAt, size int64, md *format.FileMetaData) (*plainFile, error) {
	var protocol thrift.CompactProtocol
	p := &plainFile{r: r, md: *md}
	p.md.RowGroups = slices.Clone(md.RowGroups)
	off := int64(0)
	add := func(s segment) {
		s.off = off
		if s.lit != nil {
			s.end = off + int64(len(s.lit))
		} else {
			s.end = off + s.page.plain
		}
		off = s.end
		p.segs = append(p.segs, s)
	}
	add(segment{lit: []byte("PAR1")})
	// Page headers are tens of bytes, and whatever is read past one is
	// read again with its page.
	br := bufio.NewReaderSize(nil, headerBuffer)
	// The headers as stored here, encoded one after the other into
	// headers: a slice of it stays valid when it grows.
	var enc bytes.Buffer
	encoder := thrift.NewEncoder(protocol.NewWriter(&enc))
	var headers []byte
	for i := range p.md.RowGroups {
		rg := &p.md.RowGroups[i]
		rg.Columns = slices.Clone(rg.Columns)
		p.cache = slices.Grow(p.cache, len(rg.Columns))[:max(len(p.cache), len(rg.Columns))]
		rgStart := off
		for j := range rg.Columns {
			cc := &rg.Columns[j]
			m := &cc.MetaData
			col := strings.Join(m.PathInSchema, ".")
			start := m.DataPageOffset
			if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
				start = m.DictionaryPageOffset
			}
			if start < 4 || m.TotalCompressedSize < 0 || start > size || m.TotalCompressedSize > size-start {
				return nil, fmt.Errorf("column %q: chunk at %d of %d bytes outside the file", col, start, m.TotalCompressedSize)
			}
			chunkStart := off
			for at, end := start, start+m.TotalCompressedSize; at < end; {
				cr := &countingReader{r: br}
				br.Reset(io.NewSectionReader(r, at, end-at))
				var h format.PageHeader
				if err := thrift.NewDecoder(protocol.NewReader(cr)).Decode(&h); err != nil {
					return nil, fmt.Errorf("column %q: page header: %w", col, err)
				}
				c, u := int64(h.CompressedPageSize), int64(h.UncompressedPageSize)
				if c < 0 || u < 0 || u > maxPageSize || c > m.TotalCompressedSize {
					return nil, fmt.Errorf("column %q: a page of %d bytes that decompresses to %d", col, c, u)
				}
				at += cr.n
				if c > end-at {
					return nil, fmt.Errorf("column %q: page cut short: %w", col, io.ErrUnexpectedEOF)
				}
				pg := &page{col: col, column: j, src: at, size: c, codec: m.Codec, plain: u, crc: uint32(h.CRC), hasCRC: h.CRC != 0}
				at += c
				v2 := h.DataPageHeaderV2
				switch {
				case m.Codec == format.Uncompressed:
					if c != u {
						return nil, fmt.Errorf("column %q: an uncompressed page of %d bytes that says it holds %d", col, c, u)
					}
					pg.raw = true
				case v2.Valid && v2.V.IsCompressed.Valid && !v2.V.IsCompressed.V:
					// Read as it is, as parquet-go reads it, whatever
					// size it says it holds.
					pg.raw, pg.plain = true, c
				case !codecs[m.Codec]:
					return nil, fmt.Errorf("column %q: pages compressed with %s, a codec this reader does not take", col, m.Codec)
				case v2.Valid:
					levels := int64(v2.V.RepetitionLevelsByteLength) + int64(v2.V.DefinitionLevelsByteLength)
					if levels < 0 || levels > c || levels > u {
						return nil, fmt.Errorf("column %q: page levels of %d bytes in a page of %d", col, levels, c)
					}
					pg.levels = levels
				}
				// The header as stored here: its data uncompressed, so its
				// checksum, of the data as the original stores it, is
				// checked here, on those bytes, not by parquet-go.
				h.CompressedPageSize, h.UncompressedPageSize = int32(pg.plain), int32(pg.plain)
				if !pg.raw {
					h.CRC = 0
				}
				enc.Reset()
				if err := encoder.Encode(&h); err != nil {
					return nil, fmt.Errorf("column %q: page header: %w", col, err)
				}
				n := len(headers)
				headers = append(headers, enc.Bytes()...)
				hb := headers[n:len(headers):len(headers)]
				add(segment{lit: hb})
				add(segment{page: pg})
			}
			m.Codec = format.Uncompressed
			m.TotalCompressedSize = off - chunkStart
			m.TotalUncompressedSize = off - chunkStart
			// The chunk's first page, a dictionary page or not, is its
			// data page offset, as some writers record it: parquet-go
			// then reads the dictionary page as it comes, and the chunk
			// from start to end. Told where the dictionary page is, it
			// reads the data pages, then the chunk again from its start,
			// dictionary page first, and would have pages decompressed
			// twice.
			m.DataPageOffset, m.DictionaryPageOffset, m.IndexPageOffset = chunkStart, 0, 0
			m.BloomFilterOffset, m.BloomFilterLength = 0, 0
			cc.FileOffset = chunkStart
			cc.OffsetIndexOffset, cc.OffsetIndexLength, cc.ColumnIndexOffset, cc.ColumnIndexLength = 0, 0, 0, 0
		}
		rg.FileOffset, rg.TotalCompressedSize = rgStart, off-rgStart
	}
	footer, err := thrift.Marshal(&protocol, &p.md)
	if err != nil {
		return nil, fmt.Errorf("footer: %w", err)
	}
	footer = binary.LittleEndian.AppendUint32(footer, uint32(len(footer)))
	add(segment{lit: append(footer, "PAR1"...)})
	p.size = off
	return p, nil
}

// codecs are the codecs decoders take.
var codecs = map[format.CompressionCodec]bool{format.Snappy: true, format.Gzip: true, format.Brotli: true, format.Zstd: true, format.Lz4Raw: true}

// ReadAt reads the plain file.
func (p *plainFile) ReadAt(b []byte, off int64) (n int, err error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for n < len(b) {
		if off >= p.size {
			return n, io.EOF
		}
		s := &p.segs[sort.Search(len(p.segs), func(i int) bool { return p.segs[i].end > off })]
		want := b[n:min(int64(len(b)), int64(n)+s.end-off)]
		var k int
		switch {
		case s.lit != nil:
			k = copy(want, s.lit[off-s.off:])
		case s.page.raw:
			k, err = p.r.ReadAt(want, s.page.src+off-s.off)
			if k == len(want) {
				err = nil
			}
		default:
			var data []byte
			if data, err = p.page(s.page); err == nil {
				k = copy(want, data[off-s.off:])
			}
		}
		n, off = n+k, off+int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// page returns pg decompressed.
func (p *plainFile) page(pg *page) ([]byte, error) {
	c := &p.cache[pg.column]
	if c.page == pg {
		return c.buf, nil
	}
	c.page = nil
	p.comp = slices.Grow(p.comp[:0], int(pg.size))[:pg.size]
	if _, err := p.r.ReadAt(p.comp, pg.src); err != nil {
		return nil, &pageError{pg.col, fmt.Errorf("page cut short: %w", err)}
	}
	if pg.hasCRC && crc32.ChecksumIEEE(p.comp) != pg.crc {
		return nil, &pageError{pg.col, errors.New("page checksum mismatch")}
	}
	c.buf = slices.Grow(c.buf[:0], int(pg.plain))[:pg.plain]
	copy(c.buf, p.comp[:pg.levels])
	if err := p.dec.decompress(pg.codec, c.buf[pg.levels:], p.comp[pg.levels:]); err != nil {
		return nil, &pageError{pg.col, fmt.Errorf("page does not decompress to the %d bytes it says (%s): %w", pg.plain-pg.levels, pg.codec, err)}
	}
	p.decompressed++
	c.page = pg
	return c.buf, nil
}

// close releases the decoders.
func (p *plainFile) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dec.close()
}

// decoders decompress pages, each exactly into the size its header states:
// never more, so that a damaged page cannot take more memory than that.
type decoders struct {
	zstd   *zstd.Decoder
	gzip   *gzip.Reader
	brotli *brotli.Reader
}

// decompress decompresses src, compressed with codec, into dst, which it
// must fill exactly.
func (d *decoders) decompress(codec format.CompressionCodec, dst, src []byte) error {
	if len(dst) == 0 && len(src) == 0 {
		return nil // the empty values of a v2 page of nulls, say
	}
	var rd io.Reader
	switch codec {
	case format.Snappy:
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return err
		}
		if n != len(dst) {
			return fmt.Errorf("%d bytes", n)
		}
		_, err = snappy.Decode(dst, src)
		return err
	case format.Lz4Raw:
		n, err := lz4.UncompressBlock(src, dst)
		if err == nil && n != len(dst) {
			err = fmt.Errorf("%d bytes", n)
		}
		return err
	case format.Zstd:
		if d.zstd == nil {
			// The output is bounded by dst's capacity, not by the frame's
			// window: a frame written by a streaming encoder (parquet-go's,
			// parquet-mr's) states a window of at least 1 KiB, often more
			// than the page it holds, and WithDecoderMaxMemory would reject
			// such a page.
			var err error
			if d.zstd, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true)); err != nil {
				return err
			}
		}
		out, err := d.zstd.DecodeAll(src, dst[:0:len(dst)])
		if err == nil && len(out) != len(dst) {
			err = fmt.Errorf("%d bytes", len(out))
		}
		return err
	case format.Gzip:
		var err error
		if d.gzip == nil {
			d.gzip, err = gzip.NewReader(bytes.NewReader(src))
		} else {
			err = d.gzip.Reset(bytes.NewReader(src))
		}
		if err != nil {
			return err
		}
		rd = d.gzip
	case format.Brotli:
		if d.brotli == nil {
			d.brotli = brotli.NewReader(bytes.NewReader(src))
		} else if err := d.brotli.Reset(bytes.NewReader(src)); err != nil {
			return err
		}
		rd = d.brotli
	default:
		return errors.New("a codec this reader does not take")
	}
	if n, err := io.ReadFull(rd, dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%d bytes", n)
		}
		return err
	}
	// The stream must end there (gzip checks its checksum and size at its end).
	var one [1]byte
	switch _, err := io.ReadFull(rd, one[:]); {
	case err == nil:
		return errors.New("more bytes")
	case !errors.Is(err, io.EOF):
		return err
	}
	return nil
}

func (d *decoders) close() {
	if d.zstd != nil {
		d.zstd.Close()
		d.zstd = nil
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}
