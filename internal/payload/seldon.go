package payload

import (
	"math"
	"strconv"

	"github.com/valyala/fastjson"
)

// Seldon Core 1's prediction protocol (its executor's and Python wrapper's
// /api/v1.0/predictions, and the wrapper's /predict): a SeldonMessage in
// both directions, in its JSON form.
//
//	{"meta": {…}, "status": {…},
//	 "data": {"names": [...], "ndarray": [...] | "tensor": {"shape": [...], "values": [...]} | "tftensor": …}
//	 | "jsonData": … | "strData": "…" | "binData": "…"}
//
// An element of "ndarray" is an instance, read as an element of KServe's
// "instances" is, its positional features named by "names" when the message
// has them. A "tensor" holds its elements flat, in row-major order: the
// first dimension of its shape is the instances. A "tftensor" is read as
// a "tensor" (seldontf.go). "jsonData" is read as a
// plain JSON body is (FormatJSON). A "strData" or "binData" message is one
// instance with no features: an image, a text, opaque to the sidecar. In a
// response, either gives no prediction, and is no error: a "strData"
// answer is free text (a translation, a caption), not a class, whose
// values would fill the class cap with one-offs. A request may also come
// as a form (seldonform.go).

// seldonRequest parses a Seldon Core 1 request.
func (p *Parser) seldonRequest(root *fastjson.Value, b *Batch) error {
	o := root.GetObject()
	if o == nil {
		return reqErr(ReasonTypeMismatch, "body is not an object")
	}
	if data := o.Get("data"); data != nil {
		return p.seldonData(data, b, false)
	}
	if j := o.Get("jsonData"); j != nil {
		return p.jsonRequest(j, b)
	}
	if o.Get("strData") != nil || o.Get("binData") != nil {
		p.beginRecord(b)
		p.endRecord(b)
		return nil
	}
	return reqErr(ReasonMissingField, `no "data", "jsonData", "strData" or "binData"`)
}

// seldonResponse sets the predictions of b's records from a Seldon Core 1
// response.
func (p *Parser) seldonResponse(root *fastjson.Value, b *Batch) error {
	o := root.GetObject()
	if o == nil {
		return respErr(ReasonTypeMismatch, "body is not an object")
	}
	if data := o.Get("data"); data != nil {
		return p.seldonData(data, b, true)
	}
	if j := o.Get("jsonData"); j != nil {
		return p.jsonResponse(j, b)
	}
	if o.Get("strData") != nil || o.Get("binData") != nil {
		return nil
	}
	if st := o.Get("status"); st != nil || hasErrorKey(o) {
		// {"status": {"code": 500, "info": "…", "status": "FAILURE"}}
		return respErr(ReasonInvalidResponse, "the model server returned an error")
	}
	return respErr(ReasonMissingField, `no "data", "jsonData", "strData" or "binData"`)
}

// seldonData reads the DefaultData of a request, appending a record per
// instance, or of a response, setting their predictions.
func (p *Parser) seldonData(data *fastjson.Value, b *Batch, response bool) error {
	mkErr := reqErr
	if response {
		mkErr = respErr
	}
	d := data.GetObject()
	if d == nil {
		return mkErr(ReasonTypeMismatch, `"data" is not an object`)
	}
	if !response {
		// The message's names name the positional features.
		defer func(names [][]byte) { p.featureNames = names }(p.featureNames)
		if err := p.seldonNames(d.Get("names")); err != nil {
			return err
		}
	}
	if nd := d.Get("ndarray"); nd != nil {
		if response {
			return p.predictionList(b, nd, "ndarray")
		}
		return p.rows(b, nd, "ndarray", nil)
	}
	if t := d.Get("tensor"); t != nil {
		return p.seldonTensor(t, b, response, mkErr)
	}
	if t := d.Get("tftensor"); t != nil {
		return p.seldonTFTensor(t, b, response, mkErr)
	}
	return mkErr(ReasonMissingField, `"data" has no "ndarray", "tensor" or "tftensor"`)
}

// seldonNames makes the strings of names the parser's feature names for
// this call.
func (p *Parser) seldonNames(names *fastjson.Value) error {
	if names == nil {
		return nil
	}
	if names.Type() != fastjson.TypeArray {
		return reqErr(ReasonTypeMismatch, `"names" is not an array`)
	}
	a := names.GetArray()
	p.seldonFeatureNames = p.seldonFeatureNames[:0]
	for _, n := range a {
		s, err := n.StringBytes()
		if err != nil {
			return reqErr(ReasonTypeMismatch, `"names" has an element that is not a string`)
		}
		if s == nil {
			s = []byte{}
		}
		p.seldonFeatureNames = append(p.seldonFeatureNames, s)
	}
	// Names beyond the message's are those of the configuration.
	for i := len(a); i < len(p.featureNames); i++ {
		p.seldonFeatureNames = append(p.seldonFeatureNames, p.featureNames[i])
	}
	p.featureNames = p.seldonFeatureNames
	return nil
}

// seldonTensor reads a Tensor: its values, flat in row-major order, and a
// shape whose first dimension is the instances.
func (p *Parser) seldonTensor(t *fastjson.Value, b *Batch, response bool, mkErr errFunc) error {
	o := t.GetObject()
	if o == nil {
		return mkErr(ReasonTypeMismatch, `"tensor" is not an object`)
	}
	v, s := o.Get("values"), o.Get("shape")
	if v == nil || v.Type() != fastjson.TypeArray {
		return mkErr(ReasonMissingField, `"tensor" has no "values" array`)
	}
	if s == nil || s.Type() != fastjson.TypeArray {
		return mkErr(ReasonMissingField, `"tensor" has no "shape" array`)
	}
	values, shape := v.GetArray(), s.GetArray()
	// n instances of width values each; the product is capped past the
	// values there are, so that no shape overflows it.
	limit := len(values) + 1
	n, width := 1, 1
	for i, d := range shape {
		x, err := d.Int()
		if err != nil || x < 0 {
			return mkErr(ReasonTypeMismatch, `"tensor" has a "shape" that is not of sizes`)
		}
		if i == 0 {
			n = x
		} else {
			width = cappedProduct(width, x, limit)
		}
	}
	if cappedProduct(n, width, limit) != len(values) {
		return mkErr(ReasonShapeMismatch, `"tensor" has `+strconv.Itoa(len(values))+` values, not as many as its "shape" says`)
	}
	return p.seldonInstances(b, values, n, width, response, "tensor")
}

// seldonInstances reads the n instances of width values each of a tensor
// (field "tensor" or "tftensor"), flat in row-major order: appends a
// record per instance, or, for a response, sets their predictions.
func (p *Parser) seldonInstances(b *Batch, values []*fastjson.Value, n, width int, response bool, field string) error {
	if response {
		if n != len(b.Records) {
			return respErr(ReasonShapeMismatch, `"`+field+`" has `+strconv.Itoa(n)+" predictions for "+strconv.Itoa(len(b.Records))+" instances")
		}
		for i := range b.Records {
			if err := p.seldonRow(b, &b.Records[i], values[i*width:(i+1)*width]); err != nil {
				return err
			}
		}
		return nil
	}
	if n > p.maxInstances {
		return reqErr(ReasonTooManyInstances, `"`+field+`" has `+strconv.Itoa(n)+" instances, more than "+strconv.Itoa(p.maxInstances))
	}
	for i := 0; i < n; i++ {
		p.beginRecord(b)
		for j, v := range values[i*width : (i+1)*width] {
			if p.full(b) {
				b.DroppedFeatures += width - j
				break
			}
			if err := p.flatten(b, v, p.positional(j)); err != nil {
				return err
			}
		}
		p.endRecord(b)
	}
	return nil
}

// seldonRow sets rec's prediction from its row of a response tensor: one
// value is the Prediction, several the Scores.
func (p *Parser) seldonRow(b *Batch, rec *Record, row []*fastjson.Value) error {
	if len(row) == 1 {
		return p.setPrediction(b, rec, row[0])
	}
	start := len(b.scores)
	for _, v := range row {
		f, err := v.Float64()
		if err != nil {
			b.scores = b.scores[:start]
			if v.Type() == fastjson.TypeNumber {
				return errMalformedNumber()
			}
			return respErr(ReasonTypeMismatch, `"tensor" has a value that is not a number`)
		}
		b.scores = append(b.scores, f)
	}
	p.setScores(b, rec, start)
	return nil
}

// cappedProduct is a×b, or limit when that is more; a, b ≥ 0.
func cappedProduct(a, b, limit int) int {
	if b != 0 && a > limit/b {
		return limit
	}
	return min(a*b, limit)
}

// Feedback is what a request of Seldon Core 1's feedback API says beside
// its truth.
type Feedback struct {
	// Puid is the id Seldon gave the prediction the feedback is about, the
	// response's meta.puid; nil when it has none.
	Puid []byte
	// Reward is the feedback's reward, 0 when it has none, as Seldon reads
	// it; always finite.
	Reward float64
	// Truth is true when the feedback has a truth: the batch then holds a
	// record per instance of it.
	Truth bool
}

// SeldonFeedback reads a request of Seldon Core 1's feedback API
// (/api/v1.0/feedback): {"request": …, "response": …, "reward": …,
// "truth": …}, the three messages SeldonMessages. It returns the
// response's puid and the reward, and fills b with the truth: a record per
// instance, read as a request is (without Options.FeatureNames), whose
// features hold the instance's true value. A feedback that can't be read
// whole (its truth included) is an error, and b is then empty. Puid and
// b's records are valid until the next call on p.
func (p *Parser) SeldonFeedback(body []byte, b *Batch) (Feedback, error) {
	b.Reset()
	p.reset(len(body))
	if isBlank(body) {
		return Feedback{}, reqErr(ReasonEmptyBody, "empty body")
	}
	root, ok := p.parseJSON(&p.req, body)
	if !ok {
		// A form, as Seldon's Python wrapper takes it too (seldonform.go).
		if form, isForm := p.seldonForm(body); isForm {
			root, ok = p.parseJSON(&p.req, form)
		}
	}
	if !ok {
		return Feedback{}, reqErr(ReasonInvalidJSON, "not valid JSON")
	}
	o := root.GetObject()
	if o == nil {
		return Feedback{}, reqErr(ReasonTypeMismatch, "body is not an object")
	}
	var fb Feedback
	if id := root.Get("response", "meta", "puid"); id != nil && id.Type() == fastjson.TypeString {
		fb.Puid = id.GetStringBytes()
	}
	var err error
	if fb.Reward, err = jsonReward(o.Get("reward")); err != nil {
		return Feedback{}, err
	}
	truth := o.Get("truth")
	if truth == nil || truth.Type() == fastjson.TypeNull {
		return fb, nil
	}
	if err := p.seldonTruth(truth, len(body), FormatSeldon, b); err != nil {
		return Feedback{}, err
	}
	fb.Truth = true
	return fb, nil
}

// jsonReward reads a feedback's reward, a float in protobuf's JSON mapping
// (floatJSON): a number, or a string that holds one; none is 0.
func jsonReward(v *fastjson.Value) (float64, error) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return 0, nil
	}
	r, err := floatJSON(v)
	switch {
	case err == nil:
		return finiteReward(r)
	case v.Type() == fastjson.TypeNumber:
		return 0, errMalformedNumber()
	case v.Type() == fastjson.TypeString:
		return 0, reqErr(ReasonTypeMismatch, `"reward" is a string that holds no number`)
	}
	return 0, reqErr(ReasonTypeMismatch, `"reward" is not a number`)
}

// finiteReward is r, or an error when it is NaN or infinite.
func finiteReward(r float64) (float64, error) {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return 0, reqErr(ReasonTypeMismatch, `"reward" is not a finite number`)
	}
	return r, nil
}

// seldonTruth reads the truth of a feedback of size bytes into b.
func (p *Parser) seldonTruth(truth *fastjson.Value, size int, f Format, b *Batch) error {
	p.nameBudget = 4*size + 4096
	p.copyBudget = size + 4096
	b.Format = f
	// The truth holds no features: the configuration's names are not its.
	defer func(names [][]byte) { p.featureNames = names }(p.featureNames)
	p.featureNames = nil
	if err := p.seldonRequest(truth, b); err != nil {
		b.Records, b.feats = b.Records[:0], b.feats[:0]
		return err
	}
	return nil
}
