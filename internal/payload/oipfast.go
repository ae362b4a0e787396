package payload

import (
	"math"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/valyala/fastjson/fastfloat"
)

// The OIP fast path parses the common Open Inference Protocol request,
// {"inputs": [{"name", "shape", "datatype", "data"}, ...]}, and response,
// {"outputs": [...]}, in one pass over the bytes, with the contract of fast.go:
// exact or decline. It reads JSON as fast.go does (no backslashes, no NaN or
// Infinity words, numbers through fastfloat.Parse) and, in addition:
//
//   - a tensor is an object with exactly one each of "name" (a string), "shape"
//     (an array of non-negative integers, as fastfloat.ParseUint64 reads them),
//     "datatype" (a string in oipDatatypes) and "data" (a scalar or an array of
//     scalars and arrays, flattened in order as appendElems does); other fields,
//     such as "parameters", are skipped, as tensor ignores them;
//   - everything tensor, oipRequest and oipResponse report as an error is declined
//     (a missing field, a shape that does not match the data or overflows, a batch
//     size over MaxInstances or different between inputs, a malformed number
//     anywhere in a tensor, an output missing or of the wrong batch size), so
//     the tree path reports it;
//   - a second "inputs" or "outputs" is declined (fastjson's Get takes the first,
//     detection the last);
//   - a response is declined if any output is not such a tensor, even one the
//     tree path would skip or never read, and if one is a generative model's
//     "text_output" (oipGeneration).
//
// Accepted tensors are named by oipRequest's own nameTensors, become records as
// oipRequest builds them, and apply their predictions as applyOutput does.

// fastOIPRequest parses req into b on the OIP fast path if f allows it. It reports
// false, with b and the Parser's per-call state as it found them, if the tree path
// must parse req.
func (p *Parser) fastOIPRequest(f Format, req []byte, b *Batch) bool {
	// Detection picks FormatOIP for a body the fast path accepts with at least one
	// input: its last (only) "inputs" is an array whose first element is an object
	// with "datatype".
	if f != FormatOIP && f != FormatUnknown {
		return false
	}
	p.fastReq = append(p.fastReq[:0], req...)
	p.tensors = p.tensors[:0]
	p.fastElems = p.fastElems[:0]
	if !p.scanOIPRequest(p.fastReq, f == FormatUnknown) {
		p.tensors = p.tensors[:0]
		return false
	}
	// From here on nothing can fail: build the records as oipRequest does.
	p.nameBudget = 4*len(req) + 4096
	p.copyBudget = len(req) + 4096
	n := 0
	if len(p.tensors) > 0 {
		n = p.tensors[0].rows
	}
	dropped := p.nameTensors()
	// nameTensors keeps at most MaxFeatures names in all, so addFeature's check of
	// p.full never fails here: only a nil name (over the arena's budget) is dropped.
	b.feats = slices.Grow(b.feats, n*len(p.tensorName))
	for i := 0; i < n; i++ {
		start := len(b.feats)
		for ti := range p.tensors {
			t := &p.tensors[ti]
			row := p.fastElems[t.start+i*t.k:]
			names := p.tensorName[t.nameStart : t.nameStart+t.kept]
			for j, name := range names {
				if name == nil {
					b.DroppedFeatures++
					continue
				}
				b.feats = append(b.feats, Feature{Name: name, Value: row[j]})
				if t.isBool {
					v := &b.feats[len(b.feats)-1].Value
					*v = oipElement(t, *v)
				}
			}
		}
		b.DroppedFeatures += dropped
		end := len(b.feats)
		b.Records = append(b.Records, Record{Features: b.feats[start:end:end]})
	}
	b.Format = FormatOIP
	return true
}

// oipElement converts a scanned tensor element as tensor.element does.
func oipElement(t *tensor, v Value) Value {
	if t.isBool && v.Kind == KindNumber {
		v.Kind = KindBool
		if v.Num != 0 {
			v.Num = 1
		}
	}
	return v
}

// scanOIPRequest scans a request body: an object with one "inputs" array of
// tensors, into p.tensors and p.fastElems. If nonEmpty, an empty "inputs" is
// declined (detection would not pick OIP).
func (p *Parser) scanOIPRequest(s []byte, nonEmpty bool) bool {
	if !p.scanOIPBody(s, "inputs") || nonEmpty && len(p.tensors) == 0 {
		return false
	}
	for i := range p.tensors {
		if p.tensors[i].rows != p.tensors[0].rows {
			return false
		}
	}
	return true
}

// scanOIPBody scans a body that is an object with one field named field, an
// array of tensors, and skips its other fields.
func (p *Parser) scanOIPBody(s []byte, field string) bool {
	return scanBody(s, field, nil, func(j int) (int, bool) { return p.scanTensors(s, j) })
}

// scanTensors scans an array of tensors at s[i:] into p.tensors.
func (p *Parser) scanTensors(s []byte, i int) (int, bool) {
	if i >= len(s) || s[i] != '[' {
		return i, false
	}
	return scanElements(s, i+1, func(j int) (int, bool) { return p.scanTensor(s, j) })
}

// scanTensor scans one tensor object at s[i:] and appends it to p.tensors, with
// its elements in p.fastElems. Anything tensor reports as an error is declined.
func (p *Parser) scanTensor(s []byte, i int) (int, bool) {
	if i >= len(s) || s[i] != '{' {
		return i, false
	}
	i = skipSpace(s, i+1)
	var t tensor
	t.start = len(p.fastElems)
	t.numeric = true
	var haveName, haveShape, haveType, haveData bool
	size, rows, k := uint64(1), uint64(1), uint64(1)
	overflow := false
	for {
		key, j, ok := scanField(s, i)
		if !ok {
			return j, false
		}
		switch string(key) {
		case "name":
			if haveName {
				return j, false
			}
			haveName = true
			t.name, j, ok = scanString(s, j)
		case "datatype":
			if haveType {
				return j, false
			}
			haveType = true
			var dt []byte
			if dt, j, ok = scanString(s, j); ok {
				ok = false
				for _, d := range oipDatatypes {
					if string(dt) == d {
						ok = true
						break
					}
				}
				t.isBool = string(dt) == "BOOL"
			}
		case "shape":
			if haveShape {
				return j, false
			}
			haveShape = true
			j, ok = scanShape(s, j, &size, &rows, &k, &overflow)
		case "data":
			if haveData {
				return j, false
			}
			haveData = true
			j, ok = p.scanData(s, j, &t, 3)
		default:
			j, ok = skipValue(s, j, 3)
		}
		if !ok {
			return j, false
		}
		var more bool
		if i, more, ok = next(s, j, '}'); !ok {
			return i, false
		}
		if !more {
			break
		}
	}
	if !haveName || !haveShape || !haveType || !haveData {
		return i, false
	}
	count := uint64(len(p.fastElems) - t.start)
	if overflow || size != count || rows > uint64(p.maxInstances) {
		return i, false
	}
	t.rows = int(rows)
	if rows > 0 {
		t.k = int(k) // k*rows == count, so k fits
	}
	p.tensors = append(p.tensors, t)
	return i, true
}

// scanShape scans a shape array at s[i:] and computes its size, first dimension
// and product of the other dimensions as tensor does.
func scanShape(s []byte, i int, size, rows, k *uint64, overflow *bool) (int, bool) {
	if i >= len(s) || s[i] != '[' {
		return i, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == ']' {
		return i + 1, true
	}
	for d := 0; ; d++ {
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return i, false
		}
		j := numberEnd(s, i)
		n, err := fastfloat.ParseUint64(unsafe.String(&s[i], j-i))
		if err != nil {
			return j, false
		}
		hi, lo := bits.Mul64(*size, n)
		*overflow = *overflow || hi != 0
		*size = lo
		if d == 0 {
			*rows = n
		} else {
			hi, lo := bits.Mul64(*k, n)
			*overflow = *overflow || hi != 0
			*k = lo
		}
		var more bool
		var ok bool
		if i, more, ok = next(s, j, ']'); !ok || !more {
			return i, ok
		}
	}
}

// scanData scans a tensor's data at s[i:], appending its leaves to p.fastElems as
// appendElems does: arrays are flattened, an object is declined.
func (p *Parser) scanData(s []byte, i int, t *tensor, depth int) (int, bool) {
	if depth > maxSkipDepth || i >= len(s) {
		return i, false
	}
	switch s[i] {
	case '{':
		return i, false
	case '[':
		// scanElements's loop, written out: this runs for every element of
		// every tensor, and a call through a func value here made
		// BenchmarkOIP about 8 % slower (median of nine alternating runs).
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == ']' {
			return i + 1, true
		}
		for {
			j, ok := p.scanData(s, i, t, depth+1)
			if !ok {
				return j, false
			}
			var more bool
			if i, more, ok = next(s, j, ']'); !ok || !more {
				return i, ok
			}
		}
	}
	p.fastElems = append(p.fastElems, Value{})
	j, ok := scanScalar(s, i, &p.fastElems[len(p.fastElems)-1])
	if p.fastElems[len(p.fastElems)-1].Kind == KindString {
		t.numeric = false
	}
	return j, ok
}

// fastOIPResponse sets the predictions of b's records from the OIP response resp
// on the fast path. It reports false, with no prediction set, if the tree path
// must parse resp.
func (p *Parser) fastOIPResponse(resp []byte, b *Batch) bool {
	p.fastResp = append(p.fastResp[:0], resp...)
	p.tensors = p.tensors[:0]
	p.fastElems = p.fastElems[:0]
	ok := p.scanOIPResponse(p.fastResp, b)
	p.tensors = p.tensors[:0]
	return ok
}

// scanOIPResponse scans a response body and, if it can be read exactly, applies its
// outputs to b as oipResponse does. Nothing is applied if it reports false.
func (p *Parser) scanOIPResponse(s []byte, b *Batch) bool {
	if !p.scanOIPBody(s, "outputs") {
		return false
	}
	if p.output == nil {
		for i := range p.tensors {
			if string(p.tensors[i].name) == "text_output" {
				return false // a generative model's answer: oipGeneration reads it
			}
		}
	}
	first := 0
	if p.output != nil {
		first = -1
		for i := range p.tensors {
			if string(p.tensors[i].name) == string(p.output) {
				first = i
				break
			}
		}
	}
	n := len(b.Records)
	if first < 0 || first >= len(p.tensors) || p.tensors[first].rows != n {
		return false
	}
	t := &p.tensors[first]
	p.applyFastOutput(b, t)
	if p.output != nil || n == 0 || (t.k != 1 && !t.numeric) {
		return true
	}
	for i := first + 1; i < len(p.tensors); i++ {
		u := &p.tensors[i]
		if u.rows != n {
			continue
		}
		if (t.k == 1) != (u.k == 1) && (u.k == 1 || u.numeric) {
			p.applyFastOutput(b, u)
			return true
		}
	}
	return true
}

// applyFastOutput is applyOutput on scanned elements, which cannot be malformed.
func (p *Parser) applyFastOutput(b *Batch, t *tensor) {
	if t.k != 1 && !t.numeric {
		return
	}
	for i := range b.Records {
		rec := &b.Records[i]
		row := p.fastElems[t.start+i*t.k : t.start+(i+1)*t.k]
		if t.k == 1 {
			if rec.Prediction.Kind == KindMissing {
				rec.Prediction = oipElement(t, row[0])
			}
			continue
		}
		start := len(b.scores)
		for _, e := range row {
			v := oipElement(t, e)
			if v.Kind == KindMissing {
				v.Num = math.NaN()
			}
			b.scores = append(b.scores, v.Num)
		}
		p.setScores(b, rec, start)
	}
}
