package exporter

import (
	"compress/zlib"
	"io"

	"google.golang.org/grpc/encoding"
)

// deflate is gRPC's "deflate" message compression (zlib, RFC 1950), which
// grpc-go does not ship and Triton's clients offer (tritonclient.grpc's
// compression_algorithm="deflate"): registered so that the gRPC proxy reads
// and passes on such calls instead of failing them. grpc-go ships "gzip"
// (imported in grpc.go).
type deflate struct{}

func init() { encoding.RegisterCompressor(deflate{}) }

func (deflate) Name() string { return "deflate" }

func (deflate) Compress(w io.Writer) (io.WriteCloser, error) { return zlib.NewWriter(w), nil }

func (deflate) Decompress(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) }
