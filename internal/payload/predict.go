package payload

import (
	"bytes"
	"math"
	"slices"
	"strconv"

	"github.com/valyala/fastjson"
)

// predictionKeys are the fields of an object-valued prediction that hold the
// prediction, in order of preference. Matching ignores ASCII case.
var predictionKeys = [...]string{
	"prediction", "predictions", "predicted_label", "predicted_class",
	"label", "labels", "class", "classes", "class_ids",
	"output", "outputs", "result", "results", "value", "y",
	"score", "scores", "probability", "probabilities", "logits",
}

// predictionKey returns the index of k in predictionKeys, or -1.
func predictionKey(k []byte) int {
	for i, pk := range predictionKeys {
		if len(k) == len(pk) && bytes.EqualFold(k, []byte(pk)) {
			return i
		}
	}
	return -1
}

// isErrorKey reports whether k is a field model servers use to report a failure
// ({"error": …} in KServe, TF-Serving and OIP; {"error_code": …} in MLflow).
func isErrorKey(k []byte) bool {
	return string(k) == "error" || string(k) == "error_code"
}

func hasErrorKey(o *fastjson.Object) bool {
	return o.Get("error") != nil || o.Get("error_code") != nil
}

// predictionsResponse reads a KServe v1 / TF-Serving or MLflow response: {"predictions": …},
// TF-Serving's {"outputs": …} (columnar) or {"result(s)": …} (classify/regress), or,
// as MLflow 1.x answers, a bare array.
func (p *Parser) predictionsResponse(root *fastjson.Value, b *Batch) error {
	o := root.GetObject()
	if o == nil {
		return p.predictionList(b, root, "body")
	}
	for _, key := range [...]string{"predictions", "outputs", "result", "results"} {
		if v := o.Get(key); v != nil {
			return p.predictionList(b, v, key)
		}
	}
	if hasErrorKey(o) {
		return respErr(ReasonInvalidResponse, "the model server returned an error")
	}
	if p.generation(o, b) {
		return nil
	}
	return respErr(ReasonMissingField, `no "predictions" or "outputs"`)
}

// jsonResponse reads a plain JSON response: a scalar (one instance), an array (one
// element per instance, or the single instance's vector), or an object (for one
// instance the prediction object itself, for several a columnar object of arrays).
func (p *Parser) jsonResponse(root *fastjson.Value, b *Batch) error {
	n := len(b.Records)
	switch root.Type() {
	case fastjson.TypeArray:
		if a := root.GetArray(); len(a) != n && n == 1 {
			return p.setPrediction(b, &b.Records[0], root)
		}
		return p.predictionList(b, root, "body")
	case fastjson.TypeObject:
		if n == 0 {
			return nil
		}
		o := root.GetObject()
		if p.generation(o, b) {
			return nil
		}
		if n == 1 {
			return p.object(b, &b.Records[0], o)
		}
		return p.columnar(b, o, "body")
	}
	return p.predictionList(b, root, "body")
}

// predictionList reads per-instance predictions: an array with one element per
// record, a columnar object of arrays, or, for a single record, a scalar.
func (p *Parser) predictionList(b *Batch, v *fastjson.Value, field string) error {
	n := len(b.Records)
	switch v.Type() {
	case fastjson.TypeArray:
		a := v.GetArray()
		if len(a) != n {
			return respErr(ReasonShapeMismatch, strconv.Quote(field)+" has "+strconv.Itoa(len(a))+
				" predictions for "+strconv.Itoa(n)+" instances")
		}
		for i, e := range a {
			if err := p.setPrediction(b, &b.Records[i], e); err != nil {
				return err
			}
		}
		return nil
	case fastjson.TypeObject:
		if n == 1 {
			return p.object(b, &b.Records[0], v.GetObject())
		}
		return p.columnar(b, v.GetObject(), field)
	}
	if n != 1 {
		return respErr(ReasonShapeMismatch, strconv.Quote(field)+" has one prediction for "+strconv.Itoa(n)+" instances")
	}
	return p.setPrediction(b, &b.Records[0], v)
}

// columnar reads an object whose fields are arrays with one element per record
// (TF-Serving's columnar "outputs", an MLflow model returning a dict): record i's
// prediction object has the i-th element of each such field; other fields are ignored.
func (p *Parser) columnar(b *Batch, o *fastjson.Object, field string) error {
	n := len(b.Records)
	if n == 0 {
		return nil
	}
	start := len(p.kvs)
	o.Visit(func(k []byte, v *fastjson.Value) {
		if v.Type() == fastjson.TypeArray && len(v.GetArray()) == n {
			p.kvs = append(p.kvs, kv{k: k, v: v})
		}
	})
	cols := p.kvs[start:]
	defer func() { p.kvs = p.kvs[:start] }()
	if len(cols) == 0 {
		if hasErrorKey(o) {
			return respErr(ReasonInvalidResponse, "the model server returned an error")
		}
		return respErr(ReasonShapeMismatch, strconv.Quote(field)+" has no field with one element per instance")
	}
	for i := range b.Records {
		fs := len(p.kvs)
		for _, c := range cols {
			p.kvs = append(p.kvs, kv{k: c.k, v: c.v.GetArray()[i]})
		}
		st, err := p.objectRule(b, &b.Records[i], p.kvs[fs:])
		p.kvs = p.kvs[:fs]
		if err != nil {
			return err
		}
		if err := st.err(); err != nil {
			return err
		}
	}
	return nil
}

// kv is a field of an object-valued prediction.
type kv struct {
	k []byte
	v *fastjson.Value
}

// ruleStatus is what objectRule found.
type ruleStatus uint8

const (
	ruleFound ruleStatus = iota
	ruleNotFound
	ruleError // only an error field
)

func (s ruleStatus) err() error {
	switch s {
	case ruleNotFound:
		return respErr(ReasonMissingField, "no prediction field in object")
	case ruleError:
		return respErr(ReasonInvalidResponse, "the model server returned an error")
	}
	return nil
}

// object applies objectRule to the fields of o.
func (p *Parser) object(b *Batch, rec *Record, o *fastjson.Object) error {
	start := len(p.kvs)
	o.Visit(func(k []byte, v *fastjson.Value) {
		p.kvs = append(p.kvs, kv{k: k, v: v})
	})
	st, err := p.objectRule(b, rec, p.kvs[start:])
	p.kvs = p.kvs[:start]
	if err != nil {
		return err
	}
	return st.err()
}

// objectRule sets rec's prediction from the fields of an object-valued prediction.
// The rules, in order:
//
//   - with Options.Output, only that field counts;
//   - fields named in predictionKeys are read in that order, each through
//     setPrediction, so the first scalar gives Prediction and the first vector Scores;
//   - an object with an "error" or "error_code" field and nothing else known is an error;
//   - an object with a single field is that field's value;
//   - otherwise the numeric fields, in document order, are Scores (one is Prediction).
func (p *Parser) objectRule(b *Batch, rec *Record, fields []kv) (ruleStatus, error) {
	var found [len(predictionKeys)]*fastjson.Value
	var single *fastjson.Value
	n, matched, hasError := 0, false, false
	for _, f := range fields {
		if isErrorKey(f.k) {
			hasError = true
			continue
		}
		n++
		single = f.v
		if p.output != nil {
			if found[0] == nil && len(f.k) == len(p.output) && bytes.EqualFold(f.k, p.output) {
				found[0], matched = f.v, true
			}
			continue
		}
		if i := predictionKey(f.k); i >= 0 && found[i] == nil {
			found[i], matched = f.v, true
		}
	}
	if matched {
		for _, v := range found {
			if v == nil {
				continue
			}
			if err := p.setPrediction(b, rec, v); err != nil {
				return ruleFound, err
			}
		}
		p.nameScores(b, rec, &found)
		setConfidence(rec, fields)
		return ruleFound, nil
	}
	switch {
	case p.output != nil:
		return ruleNotFound, nil
	case hasError:
		return ruleError, nil
	case n == 1:
		return ruleFound, p.setPrediction(b, rec, single)
	}

	start := len(b.scores)
	for _, f := range fields {
		if f.v.Type() != fastjson.TypeNumber || isErrorKey(f.k) {
			continue
		}
		x, err := f.v.Float64()
		if err != nil {
			b.scores = b.scores[:start]
			return ruleFound, errMalformedNumber()
		}
		b.scores = append(b.scores, x)
	}
	switch len(b.scores) - start {
	case 0:
		return ruleNotFound, nil
	case 1:
		if rec.Prediction.Kind == KindMissing {
			rec.Prediction = Value{Kind: KindNumber, Num: b.scores[start]}
		}
		b.scores = b.scores[:start]
	default:
		p.setScores(b, rec, start)
	}
	return ruleFound, nil
}

// scoreNameKeys are the fields of an object-valued prediction that can
// name its class scores, as indexes into predictionKeys.
var scoreNameKeys = [...]int{predictionKey([]byte("labels")), predictionKey([]byte("classes"))}

// nameScores gives rec's Scores, if they have no names yet, the class names
// that found's "labels" or "classes" field holds, when that is a list of as
// many strings: {"labels": ["travel", "cooking"], "scores": [0.9, 0.1]}, a
// Hugging Face zero-shot classification, whose lists are sorted by score.
// Unless rec has a prediction, the name of the first best score is it.
func (p *Parser) nameScores(b *Batch, rec *Record, found *[len(predictionKeys)]*fastjson.Value) {
	if rec.Scores == nil || rec.ScoreLabels != nil {
		return
	}
	for _, k := range scoreNameKeys {
		v := found[k]
		if v == nil || v.Type() != fastjson.TypeArray {
			continue
		}
		names := v.GetArray()
		if len(names) != len(rec.Scores) || slices.ContainsFunc(names, func(n *fastjson.Value) bool { return n.Type() != fastjson.TypeString }) {
			continue
		}
		p.nameClasses(b, rec, rec.Scores, func(i int) []byte { return names[i].GetStringBytes() })
		return
	}
}

// confidenceKeys are the fields that can hold the probability of a named
// class beside it: Hugging Face's "score" and its usual synonyms.
var confidenceKeys = [...]string{"score", "probability", "confidence"}

func isConfidenceKey(k []byte) bool {
	for _, c := range confidenceKeys {
		if len(k) == len(c) && bytes.EqualFold(k, []byte(c)) {
			return true
		}
	}
	return false
}

// setConfidence sets rec's Confidence from the first field of an object
// whose name is one of confidenceKeys, if its value is a number in [0, 1],
// when the object's prediction is a named class and it gave no class
// scores: {"label": "POSITIVE", "score": 0.98}.
func setConfidence(rec *Record, fields []kv) {
	if !canHaveConfidence(rec) {
		return
	}
	for _, f := range fields {
		if !isConfidenceKey(f.k) {
			continue
		}
		if v, ok := scalar(f.v); ok {
			setConfidenceValue(rec, v)
		}
		return
	}
}

// canHaveConfidence reports whether rec's prediction is a named class
// without class scores or a confidence yet.
func canHaveConfidence(rec *Record) bool {
	return (rec.Prediction.Kind == KindString || rec.Prediction.Kind == KindBool) && rec.Scores == nil && !rec.HasConfidence
}

// setConfidenceValue makes v rec's Confidence if it is a probability.
func setConfidenceValue(rec *Record, v Value) {
	if v.Kind == KindNumber && v.Num >= 0 && v.Num <= 1 {
		rec.Confidence, rec.HasConfidence = v.Num, true
	}
}

func errMalformedNumber() error {
	return respErr(ReasonInvalidResponse, "malformed number")
}

// setScores makes b.scores[start:] the Scores of rec, unless rec has Scores already.
func (p *Parser) setScores(b *Batch, rec *Record, start int) {
	if rec.Scores != nil || len(b.scores) == start {
		b.scores = b.scores[:start]
		return
	}
	end := len(b.scores)
	rec.Scores = b.scores[start:end:end]
}

// setPrediction sets rec's prediction from one instance's prediction v, filling
// Prediction and Scores only where they are still unset:
//
//   - a scalar is the Prediction; null is none;
//   - a one-element array is its element ([x] is x);
//   - an array of [label, score] pairs (TF-Serving classify) gives the best label as
//     Prediction and the scores as Scores;
//   - an array of numbers (nested arrays are flattened; true/false are 1/0, null NaN)
//     is Scores; other arrays are ignored;
//   - an object goes through objectRule; one without a usable field is an error.
func (p *Parser) setPrediction(b *Batch, rec *Record, v *fastjson.Value) error {
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeArray:
		a := v.GetArray()
		if len(a) == 0 {
			return nil
		}
		if isPairs(a) {
			return p.setPairs(b, rec, a)
		}
		if len(a) > 1 && isLabelScores(a) {
			return p.setLabelScores(b, rec, a)
		}
		if len(a) == 1 {
			return p.setPrediction(b, rec, a[0])
		}
		if rec.Scores != nil {
			return nil
		}
		start := len(b.scores)
		ok, err := p.appendNumeric(b, a)
		if !ok || err != nil {
			b.scores = b.scores[:start]
			return err
		}
		p.setScores(b, rec, start)
		return nil
	case fastjson.TypeObject:
		return p.object(b, rec, v.GetObject())
	}
	if rec.Prediction.Kind != KindMissing {
		return nil
	}
	s, ok := scalar(v)
	if !ok {
		return errMalformedNumber()
	}
	rec.Prediction = s
	return nil
}

// appendNumeric appends the leaves of a to b.scores. ok is false if a leaf is not
// a number, bool or null.
func (p *Parser) appendNumeric(b *Batch, a []*fastjson.Value) (ok bool, err error) {
	for _, e := range a {
		switch e.Type() {
		case fastjson.TypeNumber:
			f, err := e.Float64()
			if err != nil {
				return false, errMalformedNumber()
			}
			b.scores = append(b.scores, f)
		case fastjson.TypeTrue:
			b.scores = append(b.scores, 1)
		case fastjson.TypeFalse:
			b.scores = append(b.scores, 0)
		case fastjson.TypeNull:
			b.scores = append(b.scores, math.NaN())
		case fastjson.TypeArray:
			if ok, err := p.appendNumeric(b, e.GetArray()); !ok || err != nil {
				return false, err
			}
		default:
			return false, nil
		}
	}
	return true, nil
}

// isPairs reports whether a is a list of [label, score] pairs, as TF-Serving's classify answers.
func isPairs(a []*fastjson.Value) bool {
	for _, e := range a {
		if e.Type() != fastjson.TypeArray {
			return false
		}
		pair := e.GetArray()
		if len(pair) != 2 || pair[0].Type() != fastjson.TypeString || pair[1].Type() != fastjson.TypeNumber {
			return false
		}
	}
	return true
}

func (p *Parser) setPairs(b *Batch, rec *Record, a []*fastjson.Value) error {
	start := len(b.scores)
	for _, e := range a {
		f, err := e.GetArray()[1].Float64()
		if err != nil {
			b.scores = b.scores[:start]
			return errMalformedNumber()
		}
		b.scores = append(b.scores, f)
	}
	p.setClassified(b, rec, start, func(i int) []byte { return a[i].GetArray()[0].GetStringBytes() })
	return nil
}

// labelScore returns the class name and the score of an object of a list
// of classes ({"label": "POSITIVE", "score": 0.98}, as Hugging Face
// pipelines answer with top_k): its "label" or "class" string and its
// score (confidenceKeys) number. ok is false for any other object.
func labelScore(v *fastjson.Value) (label []byte, score *fastjson.Value, ok bool) {
	if v.Type() != fastjson.TypeObject {
		return nil, nil, false
	}
	v.GetObject().Visit(func(k []byte, v *fastjson.Value) {
		switch {
		case label == nil && v.Type() == fastjson.TypeString && (bytes.EqualFold(k, []byte("label")) || bytes.EqualFold(k, []byte("class"))):
			label = v.GetStringBytes()
		case score == nil && v.Type() == fastjson.TypeNumber && isConfidenceKey(k):
			score = v
		}
	})
	return label, score, label != nil && score != nil
}

// isLabelScores reports whether a is a list of classes with their scores
// (labelScore).
func isLabelScores(a []*fastjson.Value) bool {
	for _, e := range a {
		if _, _, ok := labelScore(e); !ok {
			return false
		}
	}
	return true
}

// setLabelScores reads a list of classes with their scores as the class
// scores of rec, as setPairs reads TF-Serving's pairs.
func (p *Parser) setLabelScores(b *Batch, rec *Record, a []*fastjson.Value) error {
	start := len(b.scores)
	for _, e := range a {
		_, v, _ := labelScore(e)
		f, err := v.Float64()
		if err != nil {
			b.scores = b.scores[:start]
			return errMalformedNumber()
		}
		b.scores = append(b.scores, f)
	}
	p.setClassified(b, rec, start, func(i int) []byte {
		l, _, _ := labelScore(a[i])
		return l
	})
	return nil
}

// setClassified makes the class scores b.scores[start:] rec's Scores,
// unless it has some, and names them (nameClasses).
func (p *Parser) setClassified(b *Batch, rec *Record, start int, label func(i int) []byte) {
	if len(b.scores) == start {
		return
	}
	if rec.Scores == nil {
		p.nameClasses(b, rec, b.scores[start:], label)
	} else if rec.Prediction.Kind == KindMissing {
		// Scores of another field: only the prediction is taken.
		rec.Prediction = bestLabel(b.scores[start:], label)
	}
	p.setScores(b, rec, start)
}

// nameClasses names the class scores of rec: label(i) is the name of the
// class of scores[i], empty when the model gives scores alone. When every
// class has a name, the names are rec's ScoreLabels; unless rec has a
// prediction, the name of the first best score is it.
func (p *Parser) nameClasses(b *Batch, rec *Record, scores []float64, label func(i int) []byte) {
	if rec.Prediction.Kind == KindMissing {
		rec.Prediction = bestLabel(scores, label)
	}
	start := len(b.labels)
	for i := range scores {
		l := label(i)
		if len(l) == 0 {
			b.labels = b.labels[:start]
			return
		}
		b.labels = append(b.labels, l)
	}
	if end := len(b.labels); end > start {
		rec.ScoreLabels = b.labels[start:end:end]
	}
}

// bestLabel returns the name of the first best of scores as a prediction,
// none when it has no name.
func bestLabel(scores []float64, label func(i int) []byte) Value {
	best := 0
	for i := 1; i < len(scores); i++ {
		if scores[i] > scores[best] {
			best = i
		}
	}
	if l := label(best); len(l) > 0 {
		return Value{Kind: KindString, Str: l}
	}
	return Value{}
}
