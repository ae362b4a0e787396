// Package payload turns model-server request and response bodies into records: one
// Record per instance of a batch, with its features by name and its prediction. The
// sidecar's workers call it off the hot path, at high rate, so a Parser reuses all of
// its memory and parsing allocates nothing in steady state.
//
// # Lifetime of results
//
// A Parser is not safe for concurrent use; give each worker its own, and a Batch to
// parse into. Feature.Name and Value.Str point into the Parser's memory (or into
// Options.FeatureNames) and are valid until the next call to Parse on that Parser,
// whichever Batch it fills; copy what must outlive it. Record.Features and
// Record.Scores belong to the Batch and are overwritten by the next Parse into it.
//
// # Formats
//
// Parse takes the Format, or FormatUnknown to detect it from the request's top-level
// shape: "inputs" as an array of objects with "datatype" is FormatOIP;
// "dataframe_split", "dataframe_records", or "columns" with "data" is FormatMLflow;
// a "data" object with "ndarray", "tensor" or "tftensor", or "jsonData", "strData" or
// "binData", is FormatSeldon; "instances", "inputs" or "examples" is FormatKServeV1;
// any other object, or an array
// of objects or arrays, is FormatJSON; anything else fails with ReasonUnknownFormat.
// DetectPath guesses the format from the request path instead.
//
// FormatKServeV1 covers KServe v1 and the TensorFlow Serving REST API. "instances"
// holds one element per instance; "inputs" holds either the same (a list) or a
// columnar object of input name → batch, whose inputs must share their first
// dimension. TF-Serving's classify and regress "examples" are instances too, each
// with the features of the shared "context". The response is "predictions",
// "outputs" (list or columnar object), or "result"/"results".
//
// FormatOIP is the Open Inference Protocol (KServe v2, Triton, MLServer, Seldon). Each
// input's data, flat or nested, must have as many elements as its shape says, and all
// inputs must share their first dimension N. A single input of shape [N, …] gives
// each record its row in row-major order, named by Options.FeatureNames, else
// "<input>" if there is one element per row, else "<input>_<j>". With several inputs
// each adds "<input>" (shape [N] or [N, 1]) or "<input>_<j>" to every record.
// Datatype BOOL turns 0/1 into booleans; BYTES elements are strings. Of a tensor's
// "parameters" only "binary_data_size" is read: Triton's binary tensor data
// extension, where the data follows the JSON of the body (oipbinary.go), in the
// request and the response alike. In the response, the output named by Options.Output, else the first
// output, gives the prediction: one element per instance is Prediction, several
// numeric ones are Scores. Without Options.Output, the first later output of the
// other kind fills the other field, so that a classifier's label and probabilities
// outputs both land in the record.
//
// FormatMLflow is the MLflow scoring server's /invocations: "dataframe_split"
// (columns and rows; without "columns", features are positional),
// "dataframe_records", and "instances" or "inputs" as in FormatKServeV1; MLflow 1.x's
// unwrapped pandas "split" object and "records" array are accepted too, and so is a
// body that is not JSON but CSV (text/csv: a header row, then a row per instance;
// csv.go). The response is {"predictions": …} (MLflow ≥ 2) or a bare array (MLflow
// 1.x).
//
// FormatSeldon is Seldon Core 1's SeldonMessage (seldon.go): each element of
// "data.ndarray" is an instance, as each of "instances" is, its positional features
// named by "data.names" before Options.FeatureNames; a "data.tensor" holds N
// instances (the first dimension of its shape) of row-major values; "jsonData" is
// read as FormatJSON; "strData" or "binData" is one opaque instance without
// features. The request may also be the form (multipart/form-data) Seldon's Python
// wrapper takes (seldonform.go). The response has the same forms: a row of one value
// is the Prediction, of several the Scores; "strData" and "binData" give none.
//
// FormatSeldonGRPC is Seldon Core 1's gRPC Predict (seldongrpc.go): its
// SeldonMessage protobufs are written out in their JSON form and read as
// FormatSeldon is; SeldonPuid reads a request's meta.puid.
//
// FormatTorchServeGRPC is TorchServe's gRPC Predictions (torchgrpc.go): the
// request's "data" input (else "body", else its only input) is read as an HTTP
// body of detected format when it is JSON, else it is one instance without
// features; the response's prediction is read as a FormatJSON answer when it
// is JSON. TorchServeRequestModel reads the model and version a request names.
//
// FormatJSON is plain JSON: an object of features is one instance, an array holds one
// instance per element. The response is a scalar or object for one instance, an
// array with one element per instance (or, for one instance, its vector), or a
// columnar object whose array fields have one element per instance.
//
// FormatOIPGRPC is the same protocol over gRPC (oipgrpc.go): a ModelInfer call's
// request and response messages, read off the protobuf wire format into the same
// tensors, features and predictions as the JSON form. InferRequestIDs reads the
// model, version and id of a request, for the proxy, and ReadStreamResponse
// what an answer of Triton's streaming call, ModelStreamInfer, says of the
// request it answers (oipstream.go).
//
// FormatTFServingGRPC is TensorFlow Serving's gRPC Predict call (tfgrpc.go):
// its PredictRequest's inputs and PredictResponse's outputs, maps of
// TensorProto, read as the OIP's tensors are, in the order of their names.
// TFRequestModel reads the model and version a request names.
//
// FormatTFServingClassifyGRPC, FormatTFServingRegressGRPC and
// FormatTFServingMultiInferenceGRPC are its calls on tf.Examples
// (tfexample.go): each Example of the request is an instance, read as an
// object of FormatKServeV1's "examples" is, and each gives its features in
// the order of their names; the context's join every example's. The
// prediction is the label of the best class (with the scores), or the
// regressed value.
//
// A generative model's answer (generate.go) is read whole in FormatJSON,
// FormatKServeV1 and FormatMLflow, and as a stream of server-sent events in any
// format: OpenAI-style completions, the OIP generate extension and TGI's API.
// Its prediction is the finish reason it gives, if any. An OIP answer, JSON or
// gRPC, with an output named text_output is one too (oipGeneration).
//
// # Features
//
// An instance that is an object gives named features. An array gives positional
// features named by Options.FeatureNames, then "0", "1", …; a scalar is a single
// positional feature. Nested objects and arrays are flattened: {"a": {"b": 1, "c":
// [2, 3]}} gives the features a.b, a.c.0 and a.c.1. Numbers, including NaN and ±Inf,
// are KindNumber; strings are KindString even when they hold a number; true and
// false are KindBool; null is KindMissing. Features beyond Options.MaxFeatures, and
// those whose generated names would outgrow a budget of about four times the request
// size, are dropped and counted in Batch.DroppedFeatures.
//
// # Predictions
//
// Predictions are matched to records by index. One instance's prediction becomes:
//
//   - a scalar: Prediction (null: none);
//   - a one-element array: its element, so [0.7] is 0.7;
//   - an array of numbers, flattened if nested: Scores (true/false as 1/0, null NaN);
//   - TF-Serving classify's [[label, score], …], or a list of {"label", "score"}
//     objects (Hugging Face pipelines with top_k; "class" for "label", and
//     "probability" or "confidence" for "score"): the label of the best score
//     (none when the labels are empty: a model that gives scores alone), all
//     scores, and their labels as ScoreLabels;
//   - an object: with Options.Output, that field only. Otherwise the fields
//     prediction, predictions, predicted_label, predicted_class, label, labels, class,
//     classes, class_ids, output, outputs, result, results, value, y, score, scores,
//     probability, probabilities and logits (ignoring case) are read in that order,
//     the first scalar giving Prediction and the first vector Scores. An object with
//     none of them is, if it has a single field, that field's value; otherwise its
//     numeric fields are Scores in document order. An object with only an "error" or
//     "error_code" field is an error from the model server.
//
// An object's "labels" or "classes" field that is a list of as many strings as
// its scores names them (ScoreLabels): a Hugging Face zero-shot classification's
// {"labels": ["travel", "cooking"], "scores": [0.9, 0.1]}, or TF-Serving's
// classification signature's {"classes": […], "scores": […]}; unless the object
// gives a prediction, the name of the best score is it.
//
// An object whose prediction is a named class (a string or bool) and that gives
// no scores has, in its first field named score, probability or confidence (case
// ignored), if that is a number from 0 to 1, the class's Confidence: {"label":
// "POSITIVE", "score": 0.98}, a Hugging Face pipeline's default answer.
//
// Nothing is derived: Prediction is not set to the argmax of Scores.
//
// # Numbers
//
// Python's json module and TF-Serving write NaN, Infinity and -Infinity; some
// writers use nan and inf. All parse as numbers: fastjson accepts all but Infinity,
// which is rewritten to a spelling it accepts in a copy of the body, outside strings.
//
// # Errors
//
// Parse returns *Error with a Reason from the fixed set Reasons, suitable as a metric
// label. If the request fails, the Batch holds no records. If only the response
// fails (blank, not JSON, a model-server error object, or a different number of
// predictions than instances), the records keep their features, have no
// predictions, and the *Error has Response set. An empty response body means there is
// no response and is not an error. Messages never quote payload content. Malformed,
// truncated or deeply nested input, huge arrays and wrong types fail with an error;
// they never panic, and memory stays proportional to the input.
package payload
