package payload

import (
	"github.com/valyala/fastjson"
	"google.golang.org/protobuf/encoding/protowire"
)

// TorchServe's gRPC inference API (frontend/server/src/main/resources/
// proto/inference.proto, service
// org.pytorch.serve.grpc.inference.InferenceAPIsService): a Predictions
// call sends one PredictionsRequest and gets one PredictionResponse.
//
//	message PredictionsRequest {
//	  string model_name = 1; string model_version = 2;
//	  map<string, bytes> input = 3; optional string sequence_id = 4;
//	}
//	message PredictionResponse { bytes prediction = 1; }
//
// The input a handler reads as its request body is the entry "data", else
// "body", else the only entry, as TorchServe's default handlers take it.
// A JSON body is read as an HTTP prediction's is (the format detected from
// its shape), and a JSON prediction as its answer; any other body (an
// image, raw text) is one instance with no features.
const (
	torchModelName    = 1
	torchModelVersion = 2
	torchInput        = 3
	torchPrediction   = 1
)

// TorchServeRequestModel reads the model name and version of a
// PredictionsRequest; nil when it does not say, or is malformed.
func TorchServeRequestModel(msg []byte) (model, version []byte) {
	if !bytesFields(msg, func(n protowire.Number, v []byte) {
		switch n {
		case torchModelName:
			model = v
		case torchModelVersion:
			version = v
		}
	}) {
		return nil, nil
	}
	return model, version
}

// parseTorchServeGRPC is Parse for FormatTorchServeGRPC. p and b have been
// reset.
func (p *Parser) parseTorchServeGRPC(req, resp []byte, b *Batch) error {
	// The inputs point into the Parser's memory, as the results of the
	// other formats do.
	p.fastReq = append(p.fastReq[:0], req...)
	entries, ok := appendMapEntries(p.protoTensors[:0], p.fastReq, torchInput)
	p.protoTensors = entries
	if !ok {
		b.Format = FormatTorchServeGRPC
		return malformed(reqErr, "the message")
	}
	var body []byte
	found := false
	for _, name := range [...]string{"data", "body"} {
		for _, e := range entries {
			if string(e.name) == name {
				body, found = e.msg, true // the last of a name counts
			}
		}
		if found {
			break
		}
	}
	if !found && len(entries) == 1 {
		body, found = entries[0].msg, true
	}
	if !found {
		b.Format = FormatTorchServeGRPC
		return reqErr(ReasonMissingField, `no input "data" or "body"`)
	}
	var prediction []byte
	if len(resp) > 0 && !bytesFields(resp, func(n protowire.Number, v []byte) {
		if n == torchPrediction {
			prediction = v
		}
	}) {
		err := p.torchBody(body, nil, b)
		b.Format = FormatTorchServeGRPC
		if err != nil {
			return err
		}
		return malformed(respErr, "the message")
	}
	// An answer that is not JSON (text, an image) gives no prediction.
	if fastjson.ValidateBytes(prediction) != nil {
		prediction = nil
	}
	err := p.torchBody(body, prediction, b)
	b.Format = FormatTorchServeGRPC
	return err
}

// torchBody reads the body of a TorchServe prediction, and its answer when
// it is JSON.
func (p *Parser) torchBody(body, prediction []byte, b *Batch) error {
	if isJSONValue(body) {
		return p.parseTree(FormatUnknown, body, prediction, b)
	}
	p.beginRecord(b)
	p.endRecord(b)
	if len(prediction) == 0 {
		return nil
	}
	return p.responseOrClear(FormatJSON, prediction, b)
}

// isJSONValue reports whether b, past leading white space, starts as a
// JSON object or array does.
func isJSONValue(b []byte) bool {
	i := skipSpace(b, 0)
	return i < len(b) && (b[i] == '{' || b[i] == '[')
}
