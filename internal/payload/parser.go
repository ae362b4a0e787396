package payload

import (
	"bytes"
	"strconv"

	"github.com/valyala/fastjson"
)

// Defaults for zero fields of Options.
const (
	DefaultMaxInstances = 10000
	DefaultMaxFeatures  = 10000
)

// bigBody is the body size above which a Parser drops its buffers at the next call,
// so that one huge payload does not pin its memory for the life of the worker.
const bigBody = 4 << 20

// Options configures a Parser.
type Options struct {
	// FeatureNames names positional (unnamed) inputs, such as instances given as
	// arrays. Beyond these, names are "0", "1", … (or "<input>_<i>" for OIP tensors).
	FeatureNames []string
	// MaxInstances caps the records per body (0 means DefaultMaxInstances). A request
	// with more fails with ReasonTooManyInstances.
	MaxInstances int
	// MaxFeatures caps the features per record (0 means DefaultMaxFeatures). Excess
	// features are dropped and counted in Batch.DroppedFeatures.
	MaxFeatures int
	// Output names the prediction to read when a response holds several: an OIP
	// output tensor, a TF-Serving named output, or a field of object-valued
	// predictions. Empty applies the rules in the package documentation.
	Output string
}

// DefaultOptions returns the Options a zero Options stands for.
func DefaultOptions() Options {
	return Options{MaxInstances: DefaultMaxInstances, MaxFeatures: DefaultMaxFeatures}
}

// Parser turns request and response bodies into records. It keeps its buffers
// between calls, so parsing allocates nothing in steady state. A Parser is not
// safe for concurrent use; give each worker its own.
type Parser struct {
	maxInstances int
	maxFeatures  int
	featureNames [][]byte
	output       []byte

	req, resp fastjson.Parser
	scratch   []byte // copy of a body being rewritten (Infinity tokens)
	lastSize  int    // size of the largest body of the previous call

	// Copies of the bodies the fast path scans, so that its results point into
	// the Parser's memory as the tree parser's do.
	fastReq, fastResp []byte
	fastElems         []Value // elements of the OIP tensors the fast path scans

	// Per-call state.
	names              []byte // arena of generated feature names
	nameBudget         int    // bytes the arena may grow to in this call
	copyBudget         int    // features that may be copied into several records (TF-Serving context)
	fillBudget         int    // elements a TensorProto's repeated last value may still fill (tfgrpc.go)
	filled             int    // elements filled so far in this call, all messages together
	idxNames           [][]byte
	idxBuf             []byte    // backing of idxNames, kept across calls
	recStart           int       // index in Batch.feats where the current record starts
	prev               []Feature // features of the previous record, to reuse its generated names
	cols               []column  // TF-Serving columnar inputs
	tensors            []tensor  // OIP inputs or outputs
	elems              []*fastjson.Value
	arena              fastjson.Arena   // values of OIP tensors' binary data
	bins               [2]binarySection // the binary data of the request and the response
	kvs                []kv             // fields of object-valued predictions
	tensorName         [][]byte         // OIP feature names, per tensor
	dims               []uint64         // the shape of the OIP tensor being read
	protoTensors       []protoTensorMsg // the tensors of an OIP gRPC message
	tfProto            []byte           // a Seldon "tftensor" in its binary form (seldontf.go)
	exampleMsgs        [][]byte         // the tf.Examples of a request (tfexample.go)
	ctxMsgs            [][]byte         // and the occurrences of their context
	ctxFeats           []protoTensorMsg // the features of their context, and of one
	exFeats            []protoTensorMsg
	exVals             []Value  // the values of a feature
	labels             [][]byte // the labels of an example's classes
	seldonFeatureNames [][]byte // a Seldon message's names, then Options.FeatureNames (seldon.go)
	form               []byte   // the JSON of a Seldon request sent as a form (seldonform.go)
	sse                []byte   // data of a server-sent event of several lines
	finish             []byte   // finish reason of a streamed generation
}

// NewParser returns a Parser configured by opts; zero fields take their defaults.
func NewParser(opts Options) *Parser {
	p := &Parser{maxInstances: opts.MaxInstances, maxFeatures: opts.MaxFeatures}
	if p.maxInstances <= 0 {
		p.maxInstances = DefaultMaxInstances
	}
	if p.maxFeatures <= 0 {
		p.maxFeatures = DefaultMaxFeatures
	}
	for _, n := range opts.FeatureNames {
		p.featureNames = append(p.featureNames, []byte(n))
	}
	if opts.Output != "" {
		p.output = []byte(opts.Output)
	}
	return p
}

// Parse parses a request body and an optional response body (nil or empty when there
// is none) in format f into dst, replacing its contents. FormatUnknown detects the
// format from the request body's shape; dst.Format reports the result.
//
// Each instance of the request becomes a Record; predictions are matched to records
// by index. If the request fails, dst holds no records. If only the response fails
// (it is blank, not JSON, an error object, or has a different number of predictions
// than the request has instances), dst keeps the records without predictions and the
// returned *Error has Response set.
//
// Byte slices in dst (Feature.Name, Value.Str) point into the Parser's memory and are
// valid until the next call to Parse on this Parser, whichever Batch it fills.
func (p *Parser) Parse(f Format, req, resp []byte, dst *Batch) error {
	dst.Reset()
	p.reset(len(req) + len(resp))
	switch f {
	case FormatOIPGRPC:
		return p.parseProto(oipGRPCForm, req, resp, dst)
	case FormatTFServingGRPC:
		return p.parseProto(tfGRPCForm, req, resp, dst)
	case FormatTFServingClassifyGRPC, FormatTFServingRegressGRPC, FormatTFServingMultiInferenceGRPC:
		return p.parseExamples(f, req, resp, dst)
	case FormatSeldonGRPC:
		return p.parseSeldonGRPC(req, resp, dst)
	case FormatTorchServeGRPC:
		return p.parseTorchServeGRPC(req, resp, dst)
	}
	// The common row-format request and its scalar predictions take a single pass
	// that gives the same result as the tree (see fast.go); anything else, the tree.
	if p.fastRequest(f, req, dst) {
		if len(resp) == 0 || p.fastResponse(resp, dst) {
			return nil
		}
		return p.responseOrClear(dst.Format, resp, dst)
	}
	// Likewise the common OIP request and response (see oipfast.go).
	if p.fastOIPRequest(f, req, dst) {
		if len(resp) == 0 || p.fastOIPResponse(resp, dst) {
			return nil
		}
		return p.responseOrClear(FormatOIP, resp, dst)
	}
	return p.parseTree(f, req, resp, dst)
}

// parseTree is Parse on fastjson's tree, for every body the fast path declines.
// dst and p must have been reset.
func (p *Parser) parseTree(f Format, req, resp []byte, dst *Batch) error {
	if isBlank(req) {
		return reqErr(ReasonEmptyBody, "empty body")
	}
	root, bin, ok := p.parseWithBinary(&p.req, req)
	csvFrame := false
	if !ok && f == FormatMLflow {
		// MLflow's scoring server also takes CSV (csv.go).
		root, ok = p.csvDataFrame(req)
		csvFrame = ok
	}
	if !ok && (f == FormatSeldon || f == FormatUnknown) {
		// Seldon's Python wrapper also takes a form (seldonform.go).
		if form, isForm := p.seldonForm(req); isForm {
			if root, ok = p.parseJSON(&p.req, form); ok && f == FormatUnknown && detect(root) != FormatSeldon {
				ok = false // a form, but of no SeldonMessage
			}
		}
	}
	if !ok {
		return reqErr(ReasonInvalidJSON, "not valid JSON")
	}
	if f == FormatUnknown {
		f = detect(root)
	}
	if bin.data != nil && f != FormatOIP {
		return reqErr(ReasonInvalidJSON, "not valid JSON: bytes after the JSON")
	}
	p.bins[0] = bin
	p.nameBudget = 4*len(req) + 4096
	p.copyBudget = len(req) + 4096

	var err error
	switch f {
	case FormatKServeV1:
		err = p.kserveRequest(root, dst)
	case FormatOIP:
		err = p.oipRequest(root, dst)
	case FormatMLflow:
		if csvFrame {
			if err = p.dataframeSplit(dst, root, "csv"); err == nil {
				csvNumbers(dst)
			}
		} else {
			err = p.mlflowRequest(root, dst)
		}
	case FormatSeldon:
		err = p.seldonRequest(root, dst)
	case FormatJSON:
		err = p.jsonRequest(root, dst)
	default:
		return reqErr(ReasonUnknownFormat, "no known format matches the body")
	}
	dst.Format = f
	if err != nil {
		dst.Records = dst.Records[:0]
		dst.feats = dst.feats[:0]
		return err
	}
	if len(resp) == 0 {
		return nil
	}
	return p.responseOrClear(f, resp, dst)
}

// responseOrClear parses resp with the tree parser and removes all predictions if it fails.
func (p *Parser) responseOrClear(f Format, resp []byte, dst *Batch) error {
	if err := p.response(f, resp, dst); err != nil {
		dst.clearPredictions()
		return err
	}
	return nil
}

func (p *Parser) reset(size int) {
	if p.lastSize > bigBody {
		// Drop buffers sized for a huge body; the results pointing into them are no
		// longer valid anyway.
		p.req, p.resp = fastjson.Parser{}, fastjson.Parser{}
		p.scratch, p.names, p.elems, p.kvs = nil, nil, nil, nil
		p.fastReq, p.fastResp, p.fastElems = nil, nil, nil
		p.sse = nil
		p.tfProto = nil
		p.form = nil
		p.protoTensors, p.exampleMsgs, p.ctxMsgs, p.ctxFeats, p.exFeats, p.exVals, p.labels = nil, nil, nil, nil, nil, nil, nil
	}
	p.lastSize = size
	p.filled = 0
	p.names = p.names[:0]
	p.prev = nil
	p.cols = p.cols[:0]
	p.tensors = p.tensors[:0]
	clear(p.elems)
	p.elems = p.elems[:0]
	p.tensorName = p.tensorName[:0]
	p.kvs = p.kvs[:0]
	p.arena.Reset()
	p.bins = [2]binarySection{}
}

// response parses resp according to format f and fills the predictions of dst.Records.
func (p *Parser) response(f Format, resp []byte, dst *Batch) error {
	if isBlank(resp) {
		return respErr(ReasonEmptyBody, "empty body")
	}
	if isEventStream(resp) {
		return p.eventStream(resp, dst)
	}
	root, bin, ok := p.parseWithBinary(&p.resp, resp)
	if !ok || bin.data != nil && f != FormatOIP {
		if lines, err := p.jsonLines(resp, dst); lines {
			return err
		}
		return respErr(ReasonInvalidResponse, "not valid JSON")
	}
	p.bins[1] = bin
	switch f {
	case FormatOIP:
		return p.oipResponse(root, dst)
	case FormatKServeV1, FormatMLflow:
		return p.predictionsResponse(root, dst)
	case FormatSeldon:
		return p.seldonResponse(root, dst)
	default:
		return p.jsonResponse(root, dst)
	}
}

// parseJSON parses b with fp. fastjson accepts NaN, nan, inf and -inf but not the
// Infinity and -Infinity that Python's json module and TF-Serving emit. Such tokens
// outside strings are rewritten, in a copy, to "Inf" padded with spaces (same length)
// before parsing. A cheap scan finds the usual spelling up front, because a failed
// parse allocates; other spellings (INFINITY, infinity) are retried after a failure.
func (p *Parser) parseJSON(fp *fastjson.Parser, b []byte) (*fastjson.Value, bool) {
	if bytes.Contains(b, []byte("Infinity")) {
		p.scratch = append(p.scratch[:0], b...)
		if rewriteInfinity(p.scratch) {
			v, err := fp.ParseBytes(p.scratch)
			return v, err == nil
		}
	}
	v, err := fp.ParseBytes(b)
	if err == nil {
		return v, true
	}
	p.scratch = append(p.scratch[:0], b...)
	if !rewriteInfinity(p.scratch) {
		return nil, false
	}
	v, err = fp.ParseBytes(p.scratch)
	return v, err == nil
}

// rewriteInfinity replaces each "Infinity" (any case) outside JSON strings with "Inf     ".
// It reports whether it replaced any.
func rewriteInfinity(b []byte) bool {
	found := false
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case (c == 'I' || c == 'i') && len(b)-i >= 8 && bytes.EqualFold(b[i:i+8], []byte("infinity")):
			copy(b[i+3:i+8], "     ")
			i += 7
			found = true
		}
	}
	return found
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// beginRecord starts a record whose features are appended to b.feats.
func (p *Parser) beginRecord(b *Batch) {
	if n := len(b.Records); n > 0 {
		p.prev = b.Records[n-1].Features
	}
	p.recStart = len(b.feats)
}

// endRecord closes the record started by beginRecord.
func (p *Parser) endRecord(b *Batch) {
	end := len(b.feats)
	b.Records = append(b.Records, Record{Features: b.feats[p.recStart:end:end]})
}

// full reports whether the current record has reached MaxFeatures.
func (p *Parser) full(b *Batch) bool {
	return len(b.feats)-p.recStart >= p.maxFeatures
}

// addFeature appends a feature to the current record, or counts it as dropped.
func (p *Parser) addFeature(b *Batch, name []byte, v Value) {
	if name == nil || p.full(b) {
		b.DroppedFeatures++
		return
	}
	b.feats = append(b.feats, Feature{Name: name, Value: v})
}

// scalar converts a JSON scalar. Arrays and objects are KindMissing; callers flatten them.
// ok is false for a number fastfloat cannot parse (fastjson's lexer is lenient).
func scalar(v *fastjson.Value) (Value, bool) {
	switch v.Type() {
	case fastjson.TypeNumber:
		f, err := v.Float64()
		if err != nil {
			return Value{}, false
		}
		return Value{Kind: KindNumber, Num: f}, true
	case fastjson.TypeString:
		return Value{Kind: KindString, Str: v.GetStringBytes()}, true
	case fastjson.TypeTrue:
		return Value{Kind: KindBool, Num: 1}, true
	case fastjson.TypeFalse:
		return Value{Kind: KindBool}, true
	}
	return Value{}, true
}

func isContainer(v *fastjson.Value) bool {
	t := v.Type()
	return t == fastjson.TypeObject || t == fastjson.TypeArray
}

// row appends the features of one instance: an object gives named features, an array
// positional ones (Options.FeatureNames, then "0", "1", …), a scalar a single positional one.
func (p *Parser) row(b *Batch, v *fastjson.Value) error {
	switch v.Type() {
	case fastjson.TypeObject:
		return p.flattenObject(b, v.GetObject(), nil)
	case fastjson.TypeArray:
		for i, e := range v.GetArray() {
			if p.full(b) {
				b.DroppedFeatures += countLeaves(e)
				continue
			}
			if err := p.flatten(b, e, p.positional(i)); err != nil {
				return err
			}
		}
		return nil
	default:
		return p.flatten(b, v, p.positional(0))
	}
}

// flatten appends v as feature name, or, if v is an object or array, its leaves as
// features named name.key and name.index.
func (p *Parser) flatten(b *Batch, v *fastjson.Value, name []byte) error {
	switch v.Type() {
	case fastjson.TypeObject:
		if name == nil {
			b.DroppedFeatures += countLeaves(v)
			return nil
		}
		return p.flattenObject(b, v.GetObject(), name)
	case fastjson.TypeArray:
		if name == nil {
			b.DroppedFeatures += countLeaves(v)
			return nil
		}
		for i, e := range v.GetArray() {
			if p.full(b) {
				b.DroppedFeatures += countLeaves(e)
				continue
			}
			var child []byte
			if isContainer(e) {
				child = p.join(name, p.index(i), -1)
			} else {
				child = p.join(name, p.index(i), len(b.feats)-p.recStart)
			}
			if err := p.flatten(b, e, child); err != nil {
				return err
			}
		}
		return nil
	}
	if p.full(b) {
		b.DroppedFeatures++
		return nil
	}
	s, ok := scalar(v)
	if !ok {
		return reqErr(ReasonInvalidJSON, "malformed number")
	}
	p.addFeature(b, name, s)
	return nil
}

// flattenObject appends the leaves of o with names prefixed by prefix (none if nil).
func (p *Parser) flattenObject(b *Batch, o *fastjson.Object, prefix []byte) error {
	var err error
	o.Visit(func(key []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		if p.full(b) {
			b.DroppedFeatures += countLeaves(v)
			return
		}
		name := key
		if name == nil {
			name = []byte{}
		}
		if prefix != nil {
			idx := -1
			if !isContainer(v) {
				idx = len(b.feats) - p.recStart
			}
			name = p.join(prefix, key, idx)
		}
		err = p.flatten(b, v, name)
	})
	return err
}

// countLeaves returns the number of features v would flatten to.
func countLeaves(v *fastjson.Value) int {
	switch v.Type() {
	case fastjson.TypeObject:
		n := 0
		v.GetObject().Visit(func(_ []byte, e *fastjson.Value) { n += countLeaves(e) })
		return n
	case fastjson.TypeArray:
		n := 0
		for _, e := range v.GetArray() {
			n += countLeaves(e)
		}
		return n
	}
	return 1
}

// join returns prefix + "." + key. If the previous record's feature at index idx has
// that name, it is reused, so a batch of like instances builds each name once. It
// returns nil when the name arena's budget is spent; the feature is then dropped.
func (p *Parser) join(prefix, key []byte, idx int) []byte {
	if key == nil {
		return nil
	}
	n := len(prefix) + 1 + len(key)
	if idx >= 0 && idx < len(p.prev) {
		if old := p.prev[idx].Name; len(old) == n && old[len(prefix)] == '.' &&
			bytes.Equal(old[:len(prefix)], prefix) && bytes.Equal(old[len(prefix)+1:], key) {
			return old
		}
	}
	return p.appendName(prefix, ".", key)
}

// appendName writes a+sep+c into the name arena and returns it, or nil over budget.
func (p *Parser) appendName(a []byte, sep string, c []byte) []byte {
	n := len(a) + len(sep) + len(c)
	if len(p.names)+n > p.nameBudget {
		return nil
	}
	start := len(p.names)
	p.names = append(p.names, a...)
	p.names = append(p.names, sep...)
	p.names = append(p.names, c...)
	return p.names[start:len(p.names):len(p.names)]
}

// positional returns the name of positional feature i.
func (p *Parser) positional(i int) []byte {
	if i < len(p.featureNames) {
		return p.featureNames[i]
	}
	return p.index(i)
}

// maxIndexNames bounds the cache of decimal names; larger indexes go to the arena.
const maxIndexNames = 1 << 14

// index returns the decimal name of i ("0", "1", …), from a cache kept across calls.
func (p *Parser) index(i int) []byte {
	if i < len(p.idxNames) {
		return p.idxNames[i]
	}
	if i >= maxIndexNames {
		var tmp [20]byte
		return p.appendName(nil, "", strconv.AppendInt(tmp[:0], int64(i), 10))
	}
	for j := len(p.idxNames); j <= i; j++ {
		start := len(p.idxBuf)
		p.idxBuf = strconv.AppendInt(p.idxBuf, int64(j), 10)
		p.idxNames = append(p.idxNames, p.idxBuf[start:len(p.idxBuf):len(p.idxBuf)])
	}
	return p.idxNames[i]
}
