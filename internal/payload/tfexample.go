package payload

import (
	"bytes"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// TensorFlow Serving's gRPC calls on tf.Examples
// (tensorflow_serving/apis/classification.proto, regression.proto,
// inference.proto and input.proto; tensorflow/core/example/example.proto
// and feature.proto): a Classify, Regress or MultiInference call sends one
// request, whose Input is a list of Examples, and gets one response. Each
// Example is an instance, with the features its map holds, as each of the
// REST API's classify and regress "examples" is (kserve.go).
//
//	message ClassificationRequest { ModelSpec model_spec = 1; Input input = 2; }  // RegressionRequest alike
//	message MultiInferenceRequest { repeated InferenceTask tasks = 1; Input input = 2; }
//	message InferenceTask { ModelSpec model_spec = 1; string method_name = 2; }
//	message Input { oneof kind { ExampleList example_list = 1; ExampleListWithContext example_list_with_context = 2; } }
//	message ExampleList { repeated Example examples = 1; }
//	message ExampleListWithContext { repeated Example examples = 1; Example context = 2; }
//	message Example { Features features = 1; }
//	message Features { map<string, Feature> feature = 1; }
//	message Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
//	message BytesList { repeated bytes value = 1; }  // FloatList: repeated float; Int64List: repeated int64
//
//	message ClassificationResponse { ClassificationResult result = 1; ModelSpec model_spec = 2; }
//	message ClassificationResult { repeated Classifications classifications = 1; }
//	message Classifications { repeated Class classes = 1; }
//	message Class { string label = 1; float score = 2; }
//	message RegressionResponse { RegressionResult result = 1; ModelSpec model_spec = 2; }
//	message RegressionResult { repeated Regression regressions = 1; }
//	message Regression { float value = 1; }
//	message MultiInferenceResponse { repeated InferenceResult results = 1; }
//	message InferenceResult {
//	  ModelSpec model_spec = 1;
//	  oneof result { ClassificationResult classification_result = 2; RegressionResult regression_result = 3; }
//	}
//
// An Example's features are read in the order of their names (a map has
// none). The context's features join every example's, and an example's
// feature wins over the context's of the same name, as TensorFlow Serving
// merges the two. A feature of one value is named as it is; one of several
// gives name.0, name.1, … as a JSON list does.
const (
	exRequestInput = 2
	multiTasks     = 1

	inputExampleList            = 1
	inputExampleListWithContext = 2
	listExamples                = 1
	listContext                 = 2
	exampleFeatures             = 1
	featuresMap                 = 1
	featureBytesList            = 1
	featureFloatList            = 2
	featureInt64List            = 3
	listValues                  = 1

	exResponseResult        = 1
	resultEntries           = 1 // classifications, regressions
	classificationClasses   = 1
	classLabel              = 1
	classScore              = 2
	regressionValue         = 1
	multiResults            = 1
	inferenceClassification = 2
	inferenceRegression     = 3
)

// parseExamples is Parse for the calls on tf.Examples. p and b have been
// reset.
func (p *Parser) parseExamples(f Format, req, resp []byte, b *Batch) error {
	b.Format = f
	// Names and strings point into the Parser's memory, as the results of
	// the other formats do.
	p.fastReq = append(p.fastReq[:0], req...)
	p.nameBudget = 4*len(req) + 4096
	p.copyBudget = len(req) + 4096
	if err := p.exampleRecords(p.fastReq, b); err != nil {
		b.Records, b.feats, b.DroppedFeatures = b.Records[:0], b.feats[:0], 0
		return err
	}
	if len(resp) == 0 {
		return nil
	}
	p.fastResp = append(p.fastResp[:0], resp...)
	if err := p.exampleResponse(f, p.fastResp, b); err != nil {
		b.clearPredictions()
		return err
	}
	return nil
}

// exampleRecords appends a record per Example of the request msg.
func (p *Parser) exampleRecords(msg []byte, b *Batch) error {
	var input []byte
	if !bytesFields(msg, func(n protowire.Number, v []byte) {
		if n == exRequestInput {
			input = v
		}
	}) {
		return malformed(reqErr, "the message")
	}
	var list []byte
	withContext := false
	if !bytesFields(input, func(n protowire.Number, v []byte) {
		switch n {
		case inputExampleList, inputExampleListWithContext:
			list, withContext = v, n == inputExampleListWithContext
		}
	}) {
		return malformed(reqErr, "input")
	}
	p.exampleMsgs = p.exampleMsgs[:0]
	// A message field sent twice is merged: the context's map entries of
	// every occurrence add up.
	p.ctxMsgs = p.ctxMsgs[:0]
	if !bytesFields(list, func(n protowire.Number, v []byte) {
		switch {
		case n == listExamples:
			p.exampleMsgs = append(p.exampleMsgs, v)
		case n == listContext && withContext:
			p.ctxMsgs = append(p.ctxMsgs, v)
		}
	}) {
		return malformed(reqErr, "input.examples")
	}
	switch n := len(p.exampleMsgs); {
	case n == 0:
		return reqErr(ReasonMissingField, "no examples")
	case n > p.maxInstances:
		return reqErr(ReasonTooManyInstances, "input has "+strconv.Itoa(n)+" examples, more than "+strconv.Itoa(p.maxInstances))
	}
	var err error
	p.ctxFeats = p.ctxFeats[:0]
	for _, c := range p.ctxMsgs {
		if p.ctxFeats, err = appendFeatureEntries(p.ctxFeats, c, "input.context"); err != nil {
			return err
		}
	}
	p.ctxFeats = lastOfEachName(p.ctxFeats)
	// Every record copies the context's features: they count against the
	// copy budget, beyond which they are dropped, so that a large context
	// times many examples cannot exhaust memory or time.
	ctxValues := 0
	for _, e := range p.ctxFeats {
		n, err := p.featureValues(e.msg, "input.context")
		if err != nil {
			return err
		}
		ctxValues += n
	}
	ctxCost := max(ctxValues, len(p.ctxFeats))
	for i, ex := range p.exampleMsgs {
		at := "input.examples[" + strconv.Itoa(i) + "]"
		if p.exFeats, err = appendFeatureEntries(p.exFeats[:0], ex, at); err != nil {
			return err
		}
		p.exFeats = lastOfEachName(p.exFeats)
		ctx := p.ctxFeats
		if p.copyBudget < ctxCost {
			b.DroppedFeatures += ctxValues
			ctx = nil
		} else {
			p.copyBudget -= ctxCost
		}
		p.beginRecord(b)
		// Both lists are in name order: merged, an example's feature takes
		// the place of the context's of its name.
		own := p.exFeats
		for len(ctx) > 0 || len(own) > 0 {
			var e protoTensorMsg
			c := -1 // which comes first: the context's (< 0), the example's (> 0), both (0)
			switch {
			case len(own) == 0:
			case len(ctx) == 0:
				c = 1
			default:
				c = bytes.Compare(ctx[0].name, own[0].name)
			}
			if c <= 0 {
				e, ctx = ctx[0], ctx[1:]
			}
			if c >= 0 {
				e, own = own[0], own[1:]
			}
			if err := p.exampleFeature(b, e, at); err != nil {
				return err
			}
		}
		p.endRecord(b)
	}
	return nil
}

// appendFeatureEntries appends the entries of the features map of the
// Example msg to dst, in the message's order.
func appendFeatureEntries(dst []protoTensorMsg, msg []byte, at string) ([]protoTensorMsg, error) {
	good := true
	ok := bytesFields(msg, func(n protowire.Number, features []byte) {
		if n == exampleFeatures && good {
			dst, good = appendMapEntries(dst, features, featuresMap)
		}
	})
	if !ok || !good {
		return dst, malformed(reqErr, at)
	}
	return dst, nil
}

// featureValues reads the values of the Feature msg into p.exVals and
// returns how many it has.
func (p *Parser) featureValues(msg []byte, at string) (int, error) {
	var list []byte
	codec := codecNone
	if !bytesFields(msg, func(n protowire.Number, v []byte) {
		switch n {
		case featureBytesList:
			list, codec = v, codecBytes
		case featureFloatList:
			list, codec = v, codecFloat32
		case featureInt64List:
			list, codec = v, codecInt64
		}
	}) {
		return 0, malformed(reqErr, at)
	}
	p.exVals = p.exVals[:0]
	if codec == codecNone {
		return 0, nil // no kind: a feature with no value
	}
	switch readContents(list, listValues, codec,
		func(v []byte) { p.exVals = append(p.exVals, Value{Kind: KindString, Str: v}) },
		func(f float64) { p.exVals = append(p.exVals, Value{Kind: KindNumber, Num: f}) }) {
	case contentsMalformed:
		return 0, malformed(reqErr, at)
	case contentsWrongType:
		return 0, reqErr(ReasonTypeMismatch, at+" has a feature list of the wrong wire type")
	}
	return len(p.exVals), nil
}

// exampleFeature adds the feature e to the current record: its value, or
// each of its values as name.0, name.1, …
func (p *Parser) exampleFeature(b *Batch, e protoTensorMsg, at string) error {
	n, err := p.featureValues(e.msg, at)
	if err != nil || n == 0 {
		return err
	}
	if n == 1 {
		p.addFeature(b, e.name, p.exVals[0])
		return nil
	}
	for j, v := range p.exVals {
		if p.full(b) {
			b.DroppedFeatures += n - j
			return nil
		}
		p.addFeature(b, p.join(e.name, p.index(j), len(b.feats)-p.recStart), v)
	}
	return nil
}

// exampleResponse sets the predictions of the records from the response
// msg of a call of format f.
func (p *Parser) exampleResponse(f Format, msg []byte, b *Batch) error {
	if f != FormatTFServingMultiInferenceGRPC {
		var result []byte
		if !bytesFields(msg, func(n protowire.Number, v []byte) {
			if n == exResponseResult {
				result = v
			}
		}) {
			return malformed(respErr, "the message")
		}
		return p.exampleResult(b, result, f == FormatTFServingClassifyGRPC, "result")
	}
	// Each result of a MultiInference call fills what the ones before it
	// left unset: the first gives the prediction, a classification the
	// scores.
	results := 0
	var err error
	ok := bytesFields(msg, func(n protowire.Number, v []byte) {
		if n != multiResults || err != nil {
			return
		}
		at := "results[" + strconv.Itoa(results) + "]"
		results++
		var result []byte
		kind := protowire.Number(0)
		if !bytesFields(v, func(n protowire.Number, v []byte) {
			if n == inferenceClassification || n == inferenceRegression {
				result, kind = v, n
			}
		}) {
			err = malformed(respErr, at)
			return
		}
		if kind != 0 {
			err = p.exampleResult(b, result, kind == inferenceClassification, at)
		}
	})
	switch {
	case !ok:
		return malformed(respErr, "the message")
	case err != nil:
		return err
	case results == 0:
		return respErr(ReasonMissingField, "no results")
	}
	return nil
}

// exampleResult sets the predictions of the records from a
// ClassificationResult, or a RegressionResult, with an entry per record.
func (p *Parser) exampleResult(b *Batch, result []byte, classification bool, at string) error {
	entries := 0
	if !bytesFields(result, func(n protowire.Number, _ []byte) {
		if n == resultEntries {
			entries++
		}
	}) {
		return malformed(respErr, at)
	}
	if entries != len(b.Records) {
		what := " regressions for "
		if classification {
			what = " classifications for "
		}
		return respErr(ReasonShapeMismatch, at+" has "+strconv.Itoa(entries)+what+strconv.Itoa(len(b.Records))+" examples")
	}
	i := 0
	var err error
	bytesFields(result, func(n protowire.Number, v []byte) {
		if n != resultEntries || err != nil {
			return
		}
		rec := &b.Records[i]
		i++
		if classification {
			err = p.classes(b, rec, v, at)
			return
		}
		var value float64 // proto3 leaves out a value of 0
		if readContents(v, regressionValue, codecFloat32, nil, func(f float64) { value = f }) != contentsRead {
			err = malformed(respErr, at)
			return
		}
		if rec.Prediction.Kind == KindMissing {
			rec.Prediction = Value{Kind: KindNumber, Num: value}
		}
	})
	return err
}

// classes sets rec's prediction from its Classifications msg: the scores of
// its classes, and the label of the best.
func (p *Parser) classes(b *Batch, rec *Record, msg []byte, at string) error {
	start := len(b.scores)
	p.labels = p.labels[:0]
	bad := false
	ok := bytesFields(msg, func(n protowire.Number, class []byte) {
		if n != classificationClasses || bad {
			return
		}
		var score float64 // a model that gives only labels gives no scores: 0
		bad = readContents(class, classScore, codecFloat32, nil, func(f float64) { score = f }) != contentsRead
		b.scores = append(b.scores, score)
		p.labels = append(p.labels, fieldBytes(class, classLabel))
	})
	if !ok || bad {
		b.scores = b.scores[:start]
		return malformed(respErr, at)
	}
	p.setClassified(b, rec, start, func(i int) []byte { return p.labels[i] })
	return nil
}
