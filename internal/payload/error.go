package payload

// Reason is the bounded cause of a parse failure, suitable as a metric label value.
type Reason string

// The reasons a Parse call can fail with. The set is fixed; see Reasons.
const (
	// ReasonEmptyBody means the body was empty or only whitespace.
	ReasonEmptyBody Reason = "empty_body"
	// ReasonInvalidJSON means the request body is not JSON (or holds an unparsable number).
	ReasonInvalidJSON Reason = "invalid_json"
	// ReasonUnknownFormat means the request matches none of the formats.
	ReasonUnknownFormat Reason = "unknown_format"
	// ReasonMissingField means a field the format requires is absent.
	ReasonMissingField Reason = "missing_field"
	// ReasonShapeMismatch means counts disagree: predictions and instances, tensor shape and data,
	// batch sizes of several inputs, or a row and its columns.
	ReasonShapeMismatch Reason = "shape_mismatch"
	// ReasonTypeMismatch means a field has the wrong JSON type, or a tensor an unknown datatype.
	ReasonTypeMismatch Reason = "type_mismatch"
	// ReasonTooManyInstances means the request holds more instances than Options.MaxInstances.
	ReasonTooManyInstances Reason = "too_many_instances"
	// ReasonInvalidResponse means the response body is not JSON, or is an error object from the model server.
	ReasonInvalidResponse Reason = "invalid_response"
	// ReasonInvalidProtobuf means a gRPC request message is not valid protobuf.
	ReasonInvalidProtobuf Reason = "invalid_protobuf"
)

var reasons = [...]Reason{
	ReasonEmptyBody,
	ReasonInvalidJSON,
	ReasonUnknownFormat,
	ReasonMissingField,
	ReasonShapeMismatch,
	ReasonTypeMismatch,
	ReasonTooManyInstances,
	ReasonInvalidResponse,
	ReasonInvalidProtobuf,
}

// Reasons returns every Reason, for pre-creating metric children. The caller owns the returned slice.
func Reasons() []Reason {
	r := reasons
	return r[:]
}

// Error is a parse failure with a bounded reason. Parse returns it as *Error; use errors.As.
//
// Messages never quote payload content, which may hold personal data: they name
// fields of the format and positions only.
type Error struct {
	Reason Reason
	Msg    string
	// Response reports whether the failure is in the response body. The request's
	// records are then still in the Batch, without predictions.
	Response bool
}

// Error implements the error interface as "<reason>: <msg>".
func (e *Error) Error() string {
	return string(e.Reason) + ": " + e.Msg
}

func reqErr(r Reason, msg string) *Error {
	return &Error{Reason: r, Msg: "request: " + msg}
}

func respErr(r Reason, msg string) *Error {
	return &Error{Reason: r, Msg: "response: " + msg, Response: true}
}
