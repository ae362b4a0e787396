package parquetdata

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
)

// countingReaderAt counts the bytes read from a file.
type countingReaderAt struct {
	r  io.ReaderAt
	mu sync.Mutex
	n  int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

// Each page is decompressed once, when parquet-go reads it: its bytes are
// read from the file once, not once to check it and again to decode it.
func TestPagesReadOnce(t *testing.T) {
	for _, codec := range []compress.Codec{&parquet.Snappy, &parquet.Gzip, &parquet.Zstd, &parquet.Lz4Raw, &parquet.Brotli, &parquet.Uncompressed} {
		t.Run(codec.String(), func(t *testing.T) {
			// Pages of 16 KiB, in row groups of 8,000 rows.
			data := benchFile(t, 20_000, codec, parquet.PageBufferSize(16<<10), parquet.MaxRowsPerRowGroup(8000))
			r := &countingReaderAt{r: bytes.NewReader(data)}
			cols, pf, err := read("x.parquet", r, int64(len(data)), drift.ReadOptions{})
			require.NoError(t, err)
			require.Len(t, cols[0].Num, 20_000)

			pages, compressed := countPages(pf)
			require.Greater(t, pages, 2*7, "several pages per column")
			require.Equal(t, compressed, pf.decompressed, "each page decompressed once")
			if codec == &parquet.Uncompressed {
				require.Zero(t, compressed)
			}
			// The footer is read by parquet-go (its length, then the
			// footer), and each page header with what follows it in the
			// buffer it is read through; the pages themselves once.
			footer := 8 + int64(binary.LittleEndian.Uint32(data[len(data)-8:]))
			require.LessOrEqual(t, r.n, int64(len(data))+2*footer+int64(pages)*headerBuffer, "%d bytes read of a file of %d", r.n, len(data))
		})
	}
}

// countPages counts the pages of pf, and those it decompresses when read:
// the compressed pages that hold anything. parquet-go reads nothing of an
// empty page (a dictionary page of a column of nulls).
func countPages(pf *plainFile) (pages, compressed int) {
	for _, s := range pf.segs {
		if s.page != nil {
			pages++
			if !s.page.raw && s.page.plain > 0 {
				compressed++
			}
		}
	}
	return pages, compressed
}

// The pages of every fixture decompress once.
func TestPagesOfFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.parquet")
	require.NoError(t, err)
	for _, name := range files {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		_, pf, err := read(name, bytes.NewReader(b), int64(len(b)), drift.ReadOptions{})
		require.NoError(t, err, name)
		_, compressed := countPages(pf)
		require.Equal(t, compressed, pf.decompressed, name)
	}
}

// A page damaged after it was written is an error naming the column, the
// damage seen as the page is read: by its checksum, or, without one, by
// its not decompressing to the size it says.
func TestDamagedPage(t *testing.T) {
	firstPage := func(t *testing.T, b []byte) *page {
		t.Helper()
		_, pf, err := read("x.parquet", bytes.NewReader(b), int64(len(b)), drift.ReadOptions{})
		require.NoError(t, err)
		for _, s := range pf.segs {
			if s.page != nil && !s.page.raw {
				return s.page
			}
		}
		t.Fatal("no compressed page")
		return nil
	}

	// parquet-go writes page checksums.
	data := benchFile(t, 20_000, &parquet.Zstd)
	pg := firstPage(t, data)
	require.True(t, pg.hasCRC)
	data[pg.src+pg.size/2] ^= 0xff
	_, err := Read("x.parquet", bytes.NewReader(data), int64(len(data)), drift.ReadOptions{})
	require.EqualError(t, err, `x.parquet: damaged Parquet file: column "amount": page checksum mismatch`)

	// Arrow does not: the snappy page says its length, which is then
	// wrong.
	data, err = os.ReadFile("testdata/float16_time.parquet")
	require.NoError(t, err)
	pg = firstPage(t, data)
	require.False(t, pg.hasCRC)
	require.Equal(t, format.Snappy, pg.codec)
	data[pg.src+pg.levels]++ // the first byte of the length, a varint
	_, err = Read("x.parquet", bytes.NewReader(data), int64(len(data)), drift.ReadOptions{})
	require.ErrorContains(t, err, `x.parquet: damaged Parquet file: column "f16": page does not decompress to the`)
}

// Each codec fills exactly the size a page says it decompresses to: fewer
// bytes, or more, are an error.
func TestDecompressSize(t *testing.T) {
	want := bytes.Repeat([]byte("modelmon "), 1000)
	for _, codec := range []compress.Codec{&parquet.Snappy, &parquet.Gzip, &parquet.Zstd, &parquet.Lz4Raw, &parquet.Brotli} {
		t.Run(codec.String(), func(t *testing.T) {
			page, err := codec.Encode(nil, want)
			require.NoError(t, err)
			var d decoders
			defer d.close()
			for range 2 { // the decoders are reused
				got := make([]byte, len(want))
				require.NoError(t, d.decompress(codec.CompressionCodec(), got, page))
				require.Equal(t, want, got)
				for _, n := range []int{len(want) - 1, len(want) + 1, 0} {
					require.Error(t, d.decompress(codec.CompressionCodec(), make([]byte, n), page), fmt.Sprint(n))
				}
			}
		})
	}
	var d decoders
	require.EqualError(t, d.decompress(format.LZO, make([]byte, 4), []byte("abcd")), "a codec this reader does not take")
}
