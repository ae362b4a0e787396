package exporter

import (
	"bytes"
	"errors"

	"github.com/valyala/fasthttp"
)

// contentEncoding is the Content-Encoding of a captured body. Clients such
// as Python's requests and Go's net/http ask for compressed answers by
// default, and model servers such as Seldon's MLServer give them: the parsers
// read the body as the model server meant it, decoded off the hot path.
type contentEncoding uint8

const (
	encIdentity contentEncoding = iota
	encGzip
	encDeflate
	encBrotli
	encZstd
	encOther // anything else, stacked codings included: not decoded
)

// bodyEncodings are the codings of a capture's request and response bodies.
type bodyEncodings struct{ req, resp contentEncoding }

var (
	hdrContentEncoding = []byte("content-encoding")
	codingNames        = [...][]byte{encGzip: []byte("gzip"), encDeflate: []byte("deflate"), encBrotli: []byte("br"), encZstd: []byte("zstd")}
)

func (e contentEncoding) String() string {
	switch e {
	case encIdentity:
		return "identity"
	case encOther:
		return "other"
	}
	return string(codingNames[e])
}

// encodingOf reads a Content-Encoding header value.
func encodingOf(v []byte) contentEncoding {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0 || bytes.EqualFold(v, []byte("identity")):
		return encIdentity
	case bytes.EqualFold(v, []byte("x-gzip")):
		return encGzip
	}
	for e := encGzip; e <= encZstd; e++ {
		if bytes.EqualFold(v, codingNames[e]) {
			return e
		}
	}
	return encOther
}

// errEncoding is a body whose coding is unknown or that does not decode.
var errEncoding = errors.New("content encoding not decoded")

// decode returns body decoded from enc, at most max bytes of it; codec is
// scratch space. A body over max is fasthttp.ErrBodyTooLarge, one that can't
// be decoded errEncoding.
func decode(codec *fasthttp.Response, enc contentEncoding, body []byte, max int) ([]byte, error) {
	switch enc {
	case encIdentity:
		return body, nil
	case encOther:
		return nil, errEncoding
	}
	defer codec.Reset()
	codec.Header.SetContentEncodingBytes(codingNames[enc])
	codec.SetBodyRaw(body)
	out, err := codec.BodyUncompressedWithLimit(max)
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return nil, err
	case err != nil:
		return nil, errEncoding
	}
	return out, nil
}
