package payload

import (
	"math"
	"math/bits"
	"strconv"

	"github.com/valyala/fastjson"
)

// oipDatatypes are the tensor datatypes of the Open Inference Protocol (and Triton's BF16).
var oipDatatypes = [...]string{
	"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
	"FP16", "FP32", "FP64", "BF16", "BYTES",
}

// tensor is an OIP input or output whose elements are p.elems[start:start+rows*k].
type tensor struct {
	name      []byte
	start     int
	rows, k   int  // shape[0] and the product of the other dimensions
	isBool    bool // datatype BOOL: numbers 0/1 become KindBool
	numeric   bool // every element is a number, bool or null
	nameStart int  // first name in p.tensorName
	kept      int  // features per record kept under MaxFeatures
}

type errFunc func(Reason, string) *Error

// tensor parses the i-th tensor of field ("inputs" or "outputs") and appends its
// flattened data to p.elems.
func (p *Parser) tensor(v *fastjson.Value, field string, i int, mkErr errFunc) (tensor, error) {
	var t tensor
	at := field + "[" + strconv.Itoa(i) + "]"
	o := v.GetObject()
	if o == nil {
		return t, mkErr(ReasonTypeMismatch, at+" is not an object")
	}
	var name, shape, datatype, data, params *fastjson.Value
	o.Visit(func(k []byte, fv *fastjson.Value) {
		switch string(k) {
		case "name":
			name = fv
		case "shape":
			shape = fv
		case "datatype":
			datatype = fv
		case "data":
			data = fv
		case "parameters":
			params = fv
		}
	})
	// The binary data extension (oipbinary.go): the bytes follow the JSON.
	bin := &p.bins[0]
	if field == "outputs" {
		bin = &p.bins[1]
	}
	binSize, binary := binaryDataSize(params)
	binary = binary && data == nil && bin.data != nil
	switch {
	case name == nil:
		return t, mkErr(ReasonMissingField, at+` has no "name"`)
	case shape == nil:
		return t, mkErr(ReasonMissingField, at+` has no "shape"`)
	case datatype == nil:
		return t, mkErr(ReasonMissingField, at+` has no "datatype"`)
	case data == nil && !binary:
		return t, mkErr(ReasonMissingField, at+` has no "data" (nor binary data after the JSON)`)
	}
	if name.Type() != fastjson.TypeString {
		return t, mkErr(ReasonTypeMismatch, at+`.name is not a string`)
	}
	t.name = name.GetStringBytes()
	if t.name == nil {
		t.name = []byte{}
	}
	if datatype.Type() != fastjson.TypeString {
		return t, mkErr(ReasonTypeMismatch, at+`.datatype is not a string`)
	}
	dt := datatype.GetStringBytes()
	if !knownDatatype(dt) {
		return t, mkErr(ReasonTypeMismatch, at+" has an unknown datatype")
	}
	t.isBool = string(dt) == "BOOL"

	if shape.Type() != fastjson.TypeArray {
		return t, mkErr(ReasonTypeMismatch, at+`.shape is not an array`)
	}
	p.dims = p.dims[:0]
	for _, d := range shape.GetArray() {
		if d.Type() != fastjson.TypeNumber {
			return t, mkErr(ReasonTypeMismatch, at+".shape has a non-numeric dimension")
		}
		n, err := d.Uint64()
		if err != nil {
			return t, mkErr(ReasonTypeMismatch, at+".shape has a dimension that is not a non-negative integer")
		}
		p.dims = append(p.dims, n)
	}

	t.start = len(p.elems)
	t.numeric = true
	if binary {
		raw, ok := bin.take(binSize)
		if !ok {
			return t, mkErr(ReasonShapeMismatch, at+" has less binary data after the JSON than its binary_data_size")
		}
		if err := p.appendBinary(&t, string(dt), raw, at, mkErr); err != nil {
			return t, err
		}
	} else if err := p.appendElems(&t, data, at, mkErr); err != nil {
		return t, err
	}
	return t, p.shapeTensor(&t, at, mkErr)
}

// knownDatatype reports whether dt is one of oipDatatypes.
func knownDatatype(dt []byte) bool {
	for _, d := range oipDatatypes {
		if string(dt) == d {
			return true
		}
	}
	return false
}

// shapeTensor checks the elements of t, appended to p.elems since t.start,
// against its shape p.dims, and sets its rows and row length.
func (p *Parser) shapeTensor(t *tensor, at string, mkErr errFunc) error {
	size, rows, k := uint64(1), uint64(1), uint64(1)
	overflow := false
	for j, n := range p.dims {
		hi, lo := bits.Mul64(size, n)
		overflow = overflow || hi != 0
		size = lo
		if j == 0 {
			rows = n
		} else {
			hi, lo := bits.Mul64(k, n)
			overflow = overflow || hi != 0
			k = lo
		}
	}
	count := uint64(len(p.elems) - t.start)
	if overflow || size != count {
		return mkErr(ReasonShapeMismatch, at+" has "+strconv.FormatUint(count, 10)+" elements, which its shape does not match")
	}
	if rows > uint64(p.maxInstances) {
		return mkErr(ReasonTooManyInstances, at+" has "+strconv.FormatUint(rows, 10)+" instances, more than "+strconv.Itoa(p.maxInstances))
	}
	t.rows = int(rows)
	if rows > 0 {
		t.k = int(k) // k*rows == count, so k fits
	}
	return nil
}

// appendElems appends the leaves of data (flat or nested) to p.elems.
func (p *Parser) appendElems(t *tensor, data *fastjson.Value, at string, mkErr errFunc) error {
	switch data.Type() {
	case fastjson.TypeArray:
		for _, e := range data.GetArray() {
			if err := p.appendElems(t, e, at, mkErr); err != nil {
				return err
			}
		}
		return nil
	case fastjson.TypeObject:
		return mkErr(ReasonTypeMismatch, at+".data holds an object")
	case fastjson.TypeString:
		t.numeric = false
	}
	p.elems = append(p.elems, data)
	return nil
}

// element converts one tensor element.
func (t *tensor) element(e *fastjson.Value) (Value, bool) {
	v, ok := scalar(e)
	if t.isBool && v.Kind == KindNumber {
		v.Kind = KindBool
		if v.Num != 0 {
			v.Num = 1
		}
	}
	return v, ok
}

// oipRequest parses an Open Inference Protocol request. One input of shape [N, …]
// gives N records whose features are the input's elements in row-major order, named
// by Options.FeatureNames, else "<input>" if there is one per record, else
// "<input>_<j>". Several inputs must share their first dimension N; each adds the
// features "<input>" (shape [N] or [N, 1]) or "<input>_<j>" to every record.
func (p *Parser) oipRequest(root *fastjson.Value, b *Batch) error {
	o := root.GetObject()
	if o == nil {
		return reqErr(ReasonTypeMismatch, "body is not an object")
	}
	in := o.Get("inputs")
	if in == nil {
		return reqErr(ReasonMissingField, `no "inputs"`)
	}
	if in.Type() != fastjson.TypeArray {
		return reqErr(ReasonTypeMismatch, `"inputs" is not an array`)
	}
	n := 0
	for i, v := range in.GetArray() {
		t, err := p.tensor(v, "inputs", i, reqErr)
		if err == nil {
			err = p.addInput(t, i, &n)
		}
		if err != nil {
			return err
		}
	}
	return p.oipRecords(b, n)
}

// addInput appends the i-th input tensor t to p.tensors: the first sets the
// batch size n, which every other must share.
func (p *Parser) addInput(t tensor, i int, n *int) error {
	if i == 0 {
		*n = t.rows
	} else if t.rows != *n {
		return reqErr(ReasonShapeMismatch, "inputs["+strconv.Itoa(i)+"] has a different batch size than inputs[0]")
	}
	p.tensors = append(p.tensors, t)
	return nil
}

// oipRecords makes the n records of the input tensors p.tensors.
func (p *Parser) oipRecords(b *Batch, n int) error {
	dropped := p.nameTensors()
	for i := 0; i < n; i++ {
		p.beginRecord(b)
		for ti := range p.tensors {
			t := &p.tensors[ti]
			row := p.elems[t.start+i*t.k:]
			for j := 0; j < t.kept; j++ {
				v, ok := t.element(row[j])
				if !ok {
					return reqErr(ReasonInvalidJSON, "malformed number")
				}
				p.addFeature(b, p.tensorName[t.nameStart+j], v)
			}
		}
		b.DroppedFeatures += dropped
		p.endRecord(b)
	}
	return nil
}

// nameTensors names the features of p.tensors once, as every record shares the
// names, and returns the number of features per record dropped under MaxFeatures.
func (p *Parser) nameTensors() int {
	single := len(p.tensors) == 1
	total, dropped := 0, 0
	for i := range p.tensors {
		t := &p.tensors[i]
		t.nameStart = len(p.tensorName)
		for j := 0; j < t.k && total < p.maxFeatures; j++ {
			p.tensorName = append(p.tensorName, p.tensorFeatureName(t, j, single))
			total++
		}
		t.kept = len(p.tensorName) - t.nameStart
		dropped += t.k - t.kept
	}
	return dropped
}

func (p *Parser) tensorFeatureName(t *tensor, j int, single bool) []byte {
	switch {
	case single && j < len(p.featureNames):
		return p.featureNames[j]
	case t.k == 1:
		return t.name
	}
	return p.appendName(t.name, "_", p.index(j))
}

// oipResponse reads an Open Inference Protocol response. The output named by
// Options.Output, else the first output, gives each record's prediction: a scalar
// per instance (shape [N] or [N, 1]) is Prediction, a numeric vector (shape [N, k])
// is Scores. Without Options.Output, the first later output of batch size N of the
// other kind fills the other field, so that a classifier's "label" and
// "probabilities" outputs both land in the record.
func (p *Parser) oipResponse(root *fastjson.Value, b *Batch) error {
	o := root.GetObject()
	if o == nil {
		return respErr(ReasonTypeMismatch, "body is not an object")
	}
	outs := o.Get("outputs")
	if outs == nil {
		if hasErrorKey(o) {
			return respErr(ReasonInvalidResponse, "the model server returned an error")
		}
		return respErr(ReasonMissingField, `no "outputs"`)
	}
	if outs.Type() != fastjson.TypeArray {
		return respErr(ReasonTypeMismatch, `"outputs" is not an array`)
	}
	a := outs.GetArray()
	return p.oipOutputs(b, len(a),
		func(i int) []byte { return a[i].GetStringBytes("name") },
		func(i int) (tensor, error) { return p.tensor(a[i], "outputs", i, respErr) })
}

// oipOutputs sets the predictions of b from the outputs of an OIP
// response, of which there are count, named by name and read by decode (in
// the order they are read, into p.elems) as oipResponse says.
func (p *Parser) oipOutputs(b *Batch, count int, name func(int) []byte, decode func(int) (tensor, error)) error {
	first := 0
	if p.output != nil {
		first = -1
		for i := 0; i < count; i++ {
			if string(name(i)) == string(p.output) {
				first = i
				break
			}
		}
	}
	if first < 0 || first >= count {
		return respErr(ReasonMissingField, "no prediction output")
	}
	if p.output == nil {
		if gen, err := p.oipGeneration(b, count, name, decode); gen || err != nil {
			return err
		}
	}
	n := len(b.Records)
	clear(p.elems)
	p.elems = p.elems[:0]
	t, err := decode(first)
	if err != nil {
		return err
	}
	if t.rows != n {
		return respErr(ReasonShapeMismatch, "outputs["+strconv.Itoa(first)+"] has "+strconv.Itoa(t.rows)+
			" predictions for "+strconv.Itoa(n)+" instances")
	}
	if err := p.applyOutput(b, &t); err != nil {
		return err
	}
	if p.output != nil || n == 0 || (t.k != 1 && !t.numeric) {
		return nil
	}
	for i := first + 1; i < count; i++ {
		u, err := decode(i)
		if err != nil || u.rows != n {
			continue
		}
		if (t.k == 1) != (u.k == 1) && (u.k == 1 || u.numeric) {
			return p.applyOutput(b, &u)
		}
	}
	return nil
}

// oipGeneration reads the outputs of a generative model served over the
// OIP's infer API (Triton's vLLM and TensorRT-LLM backends, over HTTP or
// gRPC): a "text_output" tensor of generated text, which is no prediction.
// Each record's prediction is then its "finish_reason", when the model
// gives one (the vLLM backend's return_finish_reason), and
// "num_input_tokens" and "num_output_tokens" are its token counts. It
// reports false when no output is named text_output.
func (p *Parser) oipGeneration(b *Batch, count int, name func(int) []byte, decode func(int) (tensor, error)) (bool, error) {
	gen := false
	for i := 0; i < count && !gen; i++ {
		gen = string(name(i)) == "text_output"
	}
	if !gen {
		return false, nil
	}
	g := Generation{Answered: true, InputTokens: -1, OutputTokens: -1}
	for i := 0; i < count; i++ {
		field := string(name(i))
		if field != "finish_reason" && field != "num_input_tokens" && field != "num_output_tokens" {
			continue
		}
		clear(p.elems)
		p.elems = p.elems[:0]
		t, err := decode(i)
		if err != nil {
			return true, err
		}
		if field == "finish_reason" {
			if t.rows == len(b.Records) && t.k == 1 && !t.numeric {
				if err := p.applyOutput(b, &t); err != nil {
					return true, err
				}
			}
			continue
		}
		total := int64(0)
		for _, e := range p.elems[t.start:] {
			v, ok := t.element(e)
			n, whole := tokenCount(v.Num)
			if !ok || v.Kind != KindNumber || !whole {
				total = -1
				break
			}
			total += n
		}
		if field == "num_input_tokens" {
			g.InputTokens = total
		} else {
			g.OutputTokens = total
		}
	}
	b.Generation = g
	return true, nil
}

// applyOutput sets each record's Prediction (k == 1) or Scores (numeric, k > 1) from t.
func (p *Parser) applyOutput(b *Batch, t *tensor) error {
	if t.k != 1 && !t.numeric {
		return nil
	}
	for i := range b.Records {
		rec := &b.Records[i]
		row := p.elems[t.start+i*t.k : t.start+(i+1)*t.k]
		if t.k == 1 {
			v, ok := t.element(row[0])
			if !ok {
				return errMalformedNumber()
			}
			if rec.Prediction.Kind == KindMissing {
				rec.Prediction = v
			}
			continue
		}
		start := len(b.scores)
		for _, e := range row {
			v, ok := t.element(e)
			switch {
			case !ok:
				b.scores = b.scores[:start]
				return errMalformedNumber()
			case v.Kind == KindMissing:
				v.Num = math.NaN()
			}
			b.scores = append(b.scores, v.Num)
		}
		p.setScores(b, rec, start)
	}
	return nil
}
