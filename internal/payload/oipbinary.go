package payload

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/valyala/fastjson"
)

// Triton's binary tensor data extension of the Open Inference Protocol, which
// Triton's Python and C++ clients use by default: a tensor whose
// "parameters" hold "binary_data_size" has no "data"; its bytes follow the
// JSON of the body, tensor after tensor in the order they are listed, little
// endian, and a BYTES element as a 4-byte length and its bytes. The body's
// Inference-Header-Content-Length header gives where the JSON ends; the parser
// finds that end itself (jsonEnd), so it needs no header.

// binarySection is the bytes after a body's JSON, and how far the tensors
// listed so far have taken them.
type binarySection struct {
	data []byte
	off  int
}

// take returns the next n bytes of the section.
func (s *binarySection) take(n uint64) ([]byte, bool) {
	if n > uint64(len(s.data)-s.off) {
		return nil, false
	}
	b := s.data[s.off : s.off+int(n)]
	s.off += int(n)
	return b, true
}

// parseWithBinary parses body with fp; a body that is JSON followed by the
// binary data of the extension gives its JSON's root and the section.
func (p *Parser) parseWithBinary(fp *fastjson.Parser, body []byte) (*fastjson.Value, binarySection, bool) {
	if root, ok := p.parseJSON(fp, body); ok {
		return root, binarySection{}, true
	}
	n := jsonEnd(body)
	if n <= 0 || n == len(body) {
		return nil, binarySection{}, false
	}
	root, ok := p.parseJSON(fp, body[:n])
	return root, binarySection{data: body[n:]}, ok
}

// jsonEnd returns the length of the JSON object at the start of b (after
// leading white space), or -1 when b does not start with a whole one. It
// only balances brackets outside strings; the JSON parser checks the rest.
func jsonEnd(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i == len(b) || b[i] != '{' {
		return -1
	}
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// binaryDataSize returns parameters.binary_data_size of a tensor, if it has
// a valid one.
func binaryDataSize(params *fastjson.Value) (uint64, bool) {
	if params == nil {
		return 0, false
	}
	v := params.Get("binary_data_size")
	if v == nil || v.Type() != fastjson.TypeNumber {
		return 0, false
	}
	n, err := v.Uint64()
	return n, err == nil
}

// datatypeWidth is the size of one element of a fixed-width datatype, 0 for
// BYTES.
func datatypeWidth(dt string) int {
	switch dt {
	case "BOOL", "UINT8", "INT8":
		return 1
	case "UINT16", "INT16", "FP16", "BF16":
		return 2
	case "UINT32", "INT32", "FP32":
		return 4
	case "UINT64", "INT64", "FP64":
		return 8
	}
	return 0
}

// appendBinary appends the elements of a tensor's binary data raw, of
// datatype dt, to p.elems, as values of the parser's arena.
func (p *Parser) appendBinary(t *tensor, dt string, raw []byte, at string, mkErr errFunc) error {
	w := datatypeWidth(dt)
	if w == 0 {
		// BYTES: each element is its length, 4 bytes, then its bytes.
		t.numeric = false
		for len(raw) > 0 {
			if len(raw) < 4 {
				return mkErr(ReasonShapeMismatch, at+" has a BYTES element cut short in its binary data")
			}
			n := binary.LittleEndian.Uint32(raw)
			if uint64(n) > uint64(len(raw)-4) {
				return mkErr(ReasonShapeMismatch, at+" has a BYTES element longer than its binary data")
			}
			p.elems = append(p.elems, p.arena.NewStringBytes(raw[4:4+n]))
			raw = raw[4+n:]
		}
		return nil
	}
	if len(raw)%w != 0 {
		return mkErr(ReasonShapeMismatch, at+" has "+strconv.Itoa(len(raw))+" bytes of binary data, not a whole number of "+dt+" elements")
	}
	for ; len(raw) > 0; raw = raw[w:] {
		p.elems = append(p.elems, p.arena.NewNumberFloat64(binaryElement(dt, raw)))
	}
	return nil
}

// binaryElement is the element of fixed-width datatype dt (datatypeWidth)
// at the start of raw, little-endian.
func binaryElement(dt string, raw []byte) float64 {
	switch dt {
	case "BOOL", "UINT8":
		return float64(raw[0])
	case "INT8":
		return float64(int8(raw[0]))
	case "UINT16":
		return float64(binary.LittleEndian.Uint16(raw))
	case "INT16":
		return float64(int16(binary.LittleEndian.Uint16(raw)))
	case "FP16":
		return halfToFloat(binary.LittleEndian.Uint16(raw))
	case "BF16":
		return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw)) << 16))
	case "UINT32":
		return float64(binary.LittleEndian.Uint32(raw))
	case "INT32":
		return float64(int32(binary.LittleEndian.Uint32(raw)))
	case "FP32":
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(raw)))
	case "UINT64":
		return float64(binary.LittleEndian.Uint64(raw))
	case "INT64":
		return float64(int64(binary.LittleEndian.Uint64(raw)))
	case "FP64":
		return math.Float64frombits(binary.LittleEndian.Uint64(raw))
	}
	return 0
}

// halfToFloat converts an IEEE 754 half-precision number.
func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0: // zero or subnormal
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}
