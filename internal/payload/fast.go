package payload

import (
	"bytes"
	"math"
	"unsafe"

	"github.com/valyala/fastjson/fastfloat"
)

// The fast path parses the most common request, {"instances": [...]} in row format
// with flat instances, and the most common response, {"predictions": [...]}, in one
// pass over the bytes, without building fastjson's tree. Its contract is exact or
// decline: it either fills the Batch exactly as the tree path would, or reports
// false, leaving the Batch as it found it, and the tree path runs.
//
// It accepts a subset of what fastjson accepts and reads it the same way:
//
//   - whitespace is the four JSON characters, as in fastjson;
//   - strings and keys hold no backslash, so they need no unescaping; their bytes
//     are kept as they are, as fastjson keeps them;
//   - numbers start with '-' or a digit, span the same characters as fastjson's
//     number tokens ([0-9.eE+-]) and go through fastfloat.Parse, like
//     fastjson.Value.Float64; one it rejects is declined. NaN, Infinity and other
//     words are declined, so the Infinity rewriting of parseJSON never applies to
//     an accepted body;
//   - an instance is an object of scalars (named features, duplicates kept in
//     order, as fastjson.Object.Visit gives them), an array of scalars (positional
//     features) or a scalar (one positional feature);
//   - reaching Options.MaxInstances or Options.MaxFeatures is declined, so the
//     tree path reports or counts it;
//   - other top-level fields are skipped when they cannot change the result: the
//     ones scanTopKeys knows (which select the format or the rows) are declined, as
//     is a second "instances" or "predictions";
//   - a response is an object whose "predictions" is an array with one element per
//     record: a scalar, an array of scalars, or an object with a field named in
//     predictionKeys whose value is one of those (without Options.Output). Anything
//     else (nested arrays such as [label, score] pairs, other objects, a count
//     mismatch, an error object) is left to the tree path.

// maxSkipDepth bounds the nesting of the fields the fast path skips; deeper ones
// are declined, well below fastjson.MaxDepth.
const maxSkipDepth = 64

// fastRequest parses req into b on the fast path if f allows it. It reports false,
// with b still empty, if the tree path must parse req.
func (p *Parser) fastRequest(f Format, req []byte, b *Batch) bool {
	switch f {
	case FormatUnknown:
		// Detection picks FormatKServeV1 for the bodies the fast path accepts.
		f = FormatKServeV1
	case FormatKServeV1, FormatMLflow:
	default:
		return false
	}
	p.fastReq = append(p.fastReq[:0], req...)
	if !p.scanRequest(p.fastReq, b) {
		b.Records = b.Records[:0]
		b.feats = b.feats[:0]
		return false
	}
	b.Format = f
	return true
}

// fastResponse sets the predictions of b's records from resp on the fast path. It
// reports false, with no prediction set, if the tree path must parse resp.
func (p *Parser) fastResponse(resp []byte, b *Batch) bool {
	p.fastResp = append(p.fastResp[:0], resp...)
	if !p.scanResponse(p.fastResp, b) {
		b.clearPredictions()
		return false
	}
	return true
}

// scanRequest scans a request body: an object with one "instances" field.
func (p *Parser) scanRequest(s []byte, b *Batch) bool {
	return scanBody(s, "instances", kserveDeclinedFields, func(j int) (int, bool) { return p.scanInstances(s, j, b) })
}

// kserveDeclinedFields are the top-level fields that make the tree path read a
// request as another format or read its rows elsewhere.
var kserveDeclinedFields = []string{"inputs", "examples", "context", "dataframe_split", "dataframe_records", "columns", "data"}

// scanBody scans a whole body that must be one object with exactly one field
// named field, whose value scan reads from the index it is given, returning the
// index after it. Other fields are skipped, except that any named in declined
// declines the body. It reports false to decline.
func scanBody(s []byte, field string, declined []string, scan func(j int) (int, bool)) bool {
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return false
	}
	i = skipSpace(s, i+1)
	found := false
	for {
		key, j, ok := scanField(s, i)
		if !ok {
			return false
		}
		for _, d := range declined {
			if string(key) == d {
				return false
			}
		}
		if string(key) == field {
			if found {
				return false
			}
			found = true
			j, ok = scan(j)
		} else {
			j, ok = skipValue(s, j, 2)
		}
		if !ok {
			return false
		}
		var more bool
		if i, more, ok = next(s, j, '}'); !ok {
			return false
		}
		if !more {
			return found && skipSpace(s, i) == len(s)
		}
	}
}

// scanInstances scans the array of instances at s[i:], one record per element.
func (p *Parser) scanInstances(s []byte, i int, b *Batch) (int, bool) {
	if i >= len(s) || s[i] != '[' {
		return i, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == ']' {
		return i + 1, true
	}
	for {
		if len(b.Records) >= p.maxInstances || i >= len(s) {
			return i, false
		}
		start := len(b.feats)
		ok := false
		switch s[i] {
		case '{':
			i, ok = p.scanObjectRow(s, i+1, b, start)
		case '[':
			i, ok = p.scanArrayRow(s, i+1, b, start)
		default:
			b.feats = append(b.feats, Feature{Name: p.positional(0)})
			i, ok = scanScalar(s, i, &b.feats[start].Value)
		}
		if !ok {
			return i, false
		}
		end := len(b.feats)
		b.Records = append(b.Records, Record{Features: b.feats[start:end:end]})
		var more bool
		if i, more, ok = next(s, i, ']'); !ok || !more {
			return i, ok
		}
	}
}

// scanObjectRow scans the fields of an instance object after its '{'; each is a
// feature named by its key.
func (p *Parser) scanObjectRow(s []byte, i int, b *Batch, start int) (int, bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == '}' {
		return i + 1, true
	}
	for {
		key, j, ok := scanField(s, i)
		if !ok || len(b.feats)-start >= p.maxFeatures {
			return j, false
		}
		// The value is scanned in place: returning a Value costs more than scanning it.
		b.feats = append(b.feats, Feature{Name: key})
		if j, ok = scanScalar(s, j, &b.feats[len(b.feats)-1].Value); !ok {
			return j, false
		}
		var more bool
		if i, more, ok = next(s, j, '}'); !ok || !more {
			return i, ok
		}
	}
}

// scanArrayRow scans the elements of an instance array after its '['; each is a
// positional feature.
func (p *Parser) scanArrayRow(s []byte, i int, b *Batch, start int) (int, bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == ']' {
		return i + 1, true
	}
	for {
		k := len(b.feats) - start
		// Beyond maxIndexNames, positional names come from the name arena and its budget.
		if k >= p.maxFeatures || k >= maxIndexNames {
			return i, false
		}
		b.feats = append(b.feats, Feature{Name: p.positional(k)})
		j, ok := scanScalar(s, i, &b.feats[len(b.feats)-1].Value)
		if !ok {
			return j, false
		}
		var more bool
		if i, more, ok = next(s, j, ']'); !ok || !more {
			return i, ok
		}
	}
}

// scanResponse scans a response body: an object with one "predictions" field.
// Other fields do not matter, because predictionsResponse looks for "predictions" first.
func (p *Parser) scanResponse(s []byte, b *Batch) bool {
	return scanBody(s, "predictions", nil, func(j int) (int, bool) { return p.scanPredictions(s, j, b) })
}

// scanPredictions scans an array with one prediction per record.
func (p *Parser) scanPredictions(s []byte, i int, b *Batch) (int, bool) {
	if i >= len(s) || s[i] != '[' {
		return i, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == ']' {
		return i + 1, len(b.Records) == 0
	}
	for k := 0; ; k++ {
		if k >= len(b.Records) {
			return i, false
		}
		j, ok := p.scanPrediction(s, i, b, &b.Records[k], true)
		if !ok {
			return j, false
		}
		var more bool
		if i, more, ok = next(s, j, ']'); !ok {
			return i, false
		}
		if !more {
			return i, k+1 == len(b.Records)
		}
	}
}

// scanPrediction scans one instance's prediction at s[i:] into rec, as setPrediction
// reads it: a scalar, an array of scalars or, if top is true, an object whose fields
// are those. Nested arrays (TF-Serving's [label, score] pairs among them) and objects
// are declined.
func (p *Parser) scanPrediction(s []byte, i int, b *Batch, rec *Record, top bool) (int, bool) {
	if i >= len(s) {
		return i, false
	}
	switch s[i] {
	case '[':
		return scanScores(s, i+1, b, rec)
	case '{':
		if !top || p.output != nil {
			return i, false
		}
		return p.scanPredictionObject(s, i+1, b, rec)
	}
	var v Value
	j, ok := scanScalar(s, i, &v)
	if ok && rec.Prediction.Kind == KindMissing {
		rec.Prediction = v
	}
	return j, ok
}

// scanScores scans an array of scalars after its '[': [x] is x; a longer array
// is rec's Scores if rec has none yet, unless it holds a string (appendNumeric).
func scanScores(s []byte, i int, b *Batch, rec *Record) (int, bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == ']' {
		return i + 1, true
	}
	start := len(b.scores)
	var first Value
	numeric := true
	for n := 0; ; n++ {
		var v Value
		j, ok := scanScalar(s, i, &v)
		if !ok {
			b.scores = b.scores[:start]
			return j, false
		}
		if n == 0 {
			first = v
		}
		switch v.Kind {
		case KindNumber, KindBool:
			b.scores = append(b.scores, v.Num)
		case KindMissing:
			b.scores = append(b.scores, math.NaN())
		default:
			numeric = false
		}
		var more bool
		if i, more, ok = next(s, j, ']'); !ok {
			b.scores = b.scores[:start]
			return i, false
		}
		if more {
			continue
		}
		switch {
		case n == 0:
			b.scores = b.scores[:start]
			if rec.Prediction.Kind == KindMissing {
				rec.Prediction = first
			}
		case rec.Scores != nil || !numeric:
			b.scores = b.scores[:start]
		default:
			end := len(b.scores)
			rec.Scores = b.scores[start:end:end]
		}
		return i, true
	}
}

// scanPredictionObject scans an object-valued prediction after its '{', as
// objectRule reads it without Options.Output, when a field is named in
// predictionKeys; other objects are declined. The fields found are read in the
// order of predictionKeys, the first of each name only.
func (p *Parser) scanPredictionObject(s []byte, i int, b *Batch, rec *Record) (int, bool) {
	var found [len(predictionKeys)]int // index of the value + 1, 0 if none
	conf := 0                          // of the first confidence field, likewise
	matched := false
	i = skipSpace(s, i)
	for {
		key, j, ok := scanField(s, i)
		if !ok {
			return j, false
		}
		if k := predictionKey(key); k >= 0 && found[k] == 0 {
			found[k], matched = j+1, true
		}
		if conf == 0 && isConfidenceKey(key) {
			conf = j + 1
		}
		if j, ok = skipValue(s, j, 3); !ok {
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
	if !matched {
		return i, false
	}
	for _, k := range scoreNameKeys {
		if at := found[k]; at > 0 && s[at-1] == '[' {
			return i, false // a list that may name the scores (nameScores)
		}
	}
	for _, at := range found {
		if at == 0 {
			continue
		}
		if j, ok := p.scanPrediction(s, at-1, b, rec, false); !ok {
			return j, false
		}
	}
	if conf > 0 && canHaveConfidence(rec) {
		var v Value
		if _, ok := scanScalar(s, conf-1, &v); ok {
			setConfidenceValue(rec, v)
		}
	}
	return i, true
}

// scanField scans `"key"` and the ':' after it at s[i:], and returns the key and
// the index of the value.
func scanField(s []byte, i int) ([]byte, int, bool) {
	key, j, ok := scanString(s, i)
	if !ok {
		return nil, j, false
	}
	j = skipSpace(s, j)
	if j >= len(s) || s[j] != ':' {
		return nil, j, false
	}
	return key, skipSpace(s, j+1), true
}

// scanString scans a string without backslashes at s[i:] and returns its contents
// and the index after its closing quote.
func scanString(s []byte, i int) ([]byte, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return nil, i, false
	}
	i++
	// Keys and categories are short: a loop beats two calls to bytes.IndexByte.
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '"':
			return s[i:j:j], j + 1, true
		case '\\':
			return nil, j, false
		}
	}
	return nil, len(s), false
}

// scanScalar scans a string, number, true, false or null at s[i:] into the zero
// Value v, as scalar would convert it, and returns the index after it.
func scanScalar(s []byte, i int, v *Value) (int, bool) {
	if i >= len(s) {
		return i, false
	}
	switch c := s[i]; {
	case c == '"':
		str, j, ok := scanString(s, i)
		v.Kind, v.Str = KindString, str
		return j, ok
	case c == 't':
		if bytes.HasPrefix(s[i:], []byte("true")) {
			v.Kind, v.Num = KindBool, 1
			return i + 4, true
		}
	case c == 'f':
		if bytes.HasPrefix(s[i:], []byte("false")) {
			v.Kind = KindBool
			return i + 5, true
		}
	case c == 'n':
		if bytes.HasPrefix(s[i:], []byte("null")) {
			return i + 4, true
		}
	case c == '-' || c >= '0' && c <= '9':
		j := numberEnd(s, i)
		// fastfloat.Parse takes a string; this one does not outlive the call
		// except in its error, which is discarded.
		f, err := fastfloat.Parse(unsafe.String(&s[i], j-i))
		if err != nil {
			return j, false
		}
		v.Kind, v.Num = KindNumber, f
		return j, true
	}
	return i, false
}

// numberEnd returns the end of the number token that starts at s[i], as
// fastjson delimits it.
func numberEnd(s []byte, i int) int {
	j := i + 1
	for j < len(s) && isNumberByte(s[j]) {
		j++
	}
	return j
}

// isNumberByte reports whether c continues a number token in fastjson's lexer.
func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'
}

// skipValue skips the value at s[i:], at nesting depth depth, and returns the index
// after it.
func skipValue(s []byte, i, depth int) (int, bool) {
	if depth > maxSkipDepth || i >= len(s) {
		return i, false
	}
	switch s[i] {
	case '{':
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == '}' {
			return i + 1, true
		}
		for {
			_, j, ok := scanField(s, i)
			if !ok {
				return j, false
			}
			if j, ok = skipValue(s, j, depth+1); !ok {
				return j, false
			}
			var more bool
			if i, more, ok = next(s, j, '}'); !ok || !more {
				return i, ok
			}
		}
	case '[':
		return scanElements(s, i+1, func(j int) (int, bool) { return skipValue(s, j, depth+1) })
	}
	var v Value
	return scanScalar(s, i, &v)
}

// scanElements scans the elements of an array after its '[', each with elem,
// which scans one at the index it is given and returns the index after it.
// It returns the index after the closing ']'.
func scanElements(s []byte, i int, elem func(i int) (int, bool)) (int, bool) {
	i = skipSpace(s, i)
	if i < len(s) && s[i] == ']' {
		return i + 1, true
	}
	for {
		j, ok := elem(i)
		if !ok {
			return j, false
		}
		var more bool
		if i, more, ok = next(s, j, ']'); !ok || !more {
			return i, ok
		}
	}
}

// next scans what follows a value in an object or array closed by end: a comma,
// after which more is true and i is the index of the next member, or end, after
// which i is the index after it.
func next(s []byte, i int, end byte) (j int, more, ok bool) {
	i = skipSpace(s, i)
	if i >= len(s) {
		return i, false, false
	}
	switch s[i] {
	case ',':
		return skipSpace(s, i+1), true, true
	case end:
		return i + 1, false, true
	}
	return i, false, false
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}
