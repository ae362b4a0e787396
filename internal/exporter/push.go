package exporter

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/drift/nonfinite"
	"github.com/modelmon/modelmon/internal/payload"
)

// Observation is one record of the push API (POST /v1/observations), for
// model servers that report their predictions themselves.
type Observation struct {
	Model     string          `json:"model"`
	Version   string          `json:"version"`
	ID        string          `json:"id"`
	Timestamp json.RawMessage `json:"timestamp"`
	// Features maps feature names to numbers, strings, booleans or null.
	Features map[string]any `json:"features"`
	// Prediction is a number, a string, a boolean, a list of numbers
	// (class probabilities), or an object or a list of objects read as the
	// proxy reads a model's answer ({"label": "POSITIVE", "score": 0.98}).
	Prediction any `json:"prediction"`
	// Latency is the model's service time in seconds.
	Latency *float64 `json:"latency"`

	// time is Timestamp read, zero without one.
	time time.Time
}

// Rejection names an invalid record of a push request by its position.
type Rejection struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// PushResponse is the body of every answer of the push API.
type PushResponse struct {
	Accepted int         `json:"accepted"`
	Rejected []Rejection `json:"rejected"`
	Error    string      `json:"error,omitempty"`
}

// Reasons a pushed observation is rejected, the values of the reason label of
// modelmon_observations_rejected_total.
const (
	rejectInvalidJSON       = "invalid_json"
	rejectUnknownField      = "unknown_field"
	rejectInvalidTimestamp  = "invalid_timestamp"
	rejectInvalidLatency    = "invalid_latency"
	rejectInvalidFeature    = "invalid_feature"
	rejectInvalidPrediction = "invalid_prediction"
)

var rejectReasons = []string{rejectInvalidJSON, rejectUnknownField, rejectInvalidTimestamp,
	rejectInvalidLatency, rejectInvalidFeature, rejectInvalidPrediction}

type pushHandler struct {
	maxBody int64
	models  *models
	obs     *observer
	now     func() time.Time
}

func (h *pushHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writePush(w, http.StatusMethodNotAllowed, PushResponse{Rejected: []Rejection{}, Error: "only POST is allowed"})
		return
	}
	body, status, err := readBody(w, r, h.maxBody)
	if err != nil {
		writePush(w, status, PushResponse{Rejected: []Rejection{}, Error: err.Error()})
		return
	}
	raws, err := splitRecords(nonfinite.Quote(body), r.Header.Get("Content-Type"))
	if err != nil {
		h.obs.metrics.ObservationsRejected.WithLabelValues(rejectInvalidJSON).Inc()
		writePush(w, http.StatusBadRequest, PushResponse{Rejected: []Rejection{}, Error: err.Error()})
		return
	}
	resp := PushResponse{Rejected: []Rejection{}}
	rc := h.obs.config()
	var rec [1]payload.Record
	var objects objectPredictions
	for i, raw := range raws {
		o, reason, err := decodeObservation(raw)
		if err == nil {
			reason, err = toRecord(o, &rec[0], &objects)
		}
		if err != nil {
			h.obs.metrics.ObservationsRejected.WithLabelValues(reason).Inc()
			resp.Rejected = append(resp.Rejected, Rejection{Index: i, Reason: reason, Error: err.Error()})
			continue
		}
		// A record that names no model is the default model's, as a
		// proxied request that names none is: none is rejected for it.
		name := o.Model
		if name == "" {
			name = string(rc.defaultModel)
		}
		m := h.models.get([]byte(name), rc.cfg.Limits.MaxModels)
		m.setVersion([]byte(o.Version))
		if o.Latency != nil {
			m.duration.Observe(*o.Latency)
		}
		h.obs.observe(m, rc.models[m.name], false, rec[:])
		if o.ID != "" && h.obs.labels != nil {
			// The prediction was made at its timestamp: its label's delay
			// and its TTL run from then.
			now := h.now()
			at := cmp.Or(o.time, now)
			h.obs.labels.observeAt(now, at, m.name, []byte(o.ID), rc.models[m.name], rec[:])
		}
		h.obs.metrics.ObservationsReceived.WithLabelValues(m.name).Inc()
		resp.Accepted++
	}
	status = http.StatusOK
	if resp.Accepted == 0 && len(resp.Rejected) > 0 {
		status = http.StatusBadRequest
	}
	writePush(w, status, resp)
}

// readBody reads the body of a push or labels request, decoded from its
// Content-Encoding (gzip, deflate, br, zstd), and at most max bytes both as
// sent and decoded. On failure it returns the status to answer with.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, int, error) {
	tooLarge := fmt.Errorf("body larger than --push.max-body-size (%d bytes)", max)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, tooLarge
		}
		return nil, http.StatusBadRequest, fmt.Errorf("couldn't read body: %w", err)
	}
	coding := r.Header.Get("Content-Encoding")
	enc := encodingOf([]byte(coding))
	if enc == encIdentity {
		return body, 0, nil
	}
	if enc == encOther {
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q: use gzip, deflate, br or zstd", coding)
	}
	var codec fasthttp.Response
	body, err = decode(&codec, enc, body, int(max))
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("%w once decoded", tooLarge)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("couldn't decode the %s body", enc)
	}
	return body, 0, nil
}

func writePush(w http.ResponseWriter, status int, resp PushResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

// splitRecords splits a body into raw records: a JSON array, a single JSON
// object (on one line or several), or NDJSON (one object a line, blank lines
// ignored).
func splitRecords(body []byte, contentType string) ([]json.RawMessage, error) {
	// A UTF-8 byte order mark, which Windows tools write at the start of
	// a file (PowerShell's UTF8 encoding), is not JSON: RFC 8259 lets a
	// parser ignore it, and encoding/json does not.
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\ufeff")))
	if len(trimmed) == 0 {
		return nil, errors.New("empty body: send a JSON array or NDJSON of observations")
	}
	ndjson := strings.Contains(contentType, "ndjson") || strings.Contains(contentType, "jsonlines")
	if !ndjson && trimmed[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, fmt.Errorf("invalid JSON array: %w", err)
		}
		return raws, nil
	}
	if trimmed[0] == '{' && json.Valid(trimmed) {
		// A single object, which may span several lines (pretty-printed):
		// one record, not one per line. NDJSON of two records or more is
		// not one JSON value, and fails here after its first line.
		return []json.RawMessage{trimmed}, nil
	}
	var raws []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(trimmed))
	sc.Buffer(make([]byte, 0, 64<<10), len(trimmed)+1)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		raws = append(raws, json.RawMessage(bytes.Clone(line)))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("couldn't read NDJSON: %w", err)
	}
	return raws, nil
}

func decodeObservation(raw json.RawMessage) (*Observation, string, error) {
	if err := isObject(raw); err != nil {
		return nil, rejectInvalidJSON, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var o Observation
	if err := dec.Decode(&o); err != nil {
		if strings.Contains(err.Error(), "unknown field") {
			return nil, rejectUnknownField, err
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "latency" {
			if te.Value == "string" && bytes.Contains(raw, []byte(nonfinite.Mark)) {
				return nil, rejectInvalidLatency, errors.New("latency must be a finite number of seconds ≥ 0, got NaN or Infinity")
			}
			if n, ok := strings.CutPrefix(te.Value, "number "); ok {
				// Too large for a float64 (1e999).
				return nil, rejectInvalidLatency, fmt.Errorf("latency must be a finite number of seconds ≥ 0, got %s", n)
			}
		}
		return nil, rejectInvalidJSON, err
	}
	if dec.More() {
		return nil, rejectInvalidJSON, errors.New("more than one JSON value in a record")
	}
	if err := exactFields(raw, observationFields); err != nil {
		return nil, rejectUnknownField, err
	}
	if o.Latency != nil && (math.IsNaN(*o.Latency) || math.IsInf(*o.Latency, 0) || *o.Latency < 0) {
		return nil, rejectInvalidLatency, fmt.Errorf("latency must be a finite number of seconds ≥ 0, got %v", *o.Latency)
	}
	if len(o.Timestamp) > 0 {
		t, err := parseTimestamp(o.Timestamp)
		if err != nil {
			return nil, rejectInvalidTimestamp, err
		}
		o.time = t
	}
	return &o, "", nil
}

// isObject returns an error when raw, a record of a push or labels
// request, is a JSON value other than an object. encoding/json decodes null
// into a struct as nothing at all, which would make it an empty record (for
// the push API, an observation of the default model). What is not JSON at
// all is left to the decoder, whose error says what it found.
func isObject(raw json.RawMessage) error {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 || raw[0] == '{' {
		return nil // an empty record fails to decode
	}
	var kind string
	switch raw[0] {
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		kind = "a number"
	case 'n':
		kind = "null"
	case '[':
		kind = "an array"
	case '"':
		kind = "a string"
	case 't', 'f':
		kind = "a boolean"
	default:
		return nil // not JSON: decoding says where
	}
	return fmt.Errorf("a record must be a JSON object, got %s", kind)
}

// observationFields are the names of an Observation's JSON fields.
var observationFields = jsonFields(reflect.TypeFor[Observation]())

// jsonFields returns the names the json tags of struct type t give its
// fields.
func jsonFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// exactFields returns an error, as encoding/json words it for an unknown
// field, unless each key of the JSON object raw is exactly one of fields.
// encoding/json matches a key to a field regardless of case, so "Model"
// or "FEATURES" would be read as model or features rather than refused as
// README says unknown fields are. raw must be valid JSON (a record that
// decoded): the keys are found in one pass over it, without decoding it
// again.
func exactFields(raw []byte, fields []string) error {
	depth, key := 0, false // key: the next string is a key of raw's object
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{':
			depth++
			key = depth == 1
		case '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			key = depth == 1
		case '"':
			end := nonfinite.StringEnd(raw, i+1)
			if key {
				if name, ok := knownField(raw[i:end+1], fields); !ok {
					return fmt.Errorf("json: unknown field %q", name)
				}
				key = false
			}
			i = end
		}
	}
	return nil
}

// knownField reports whether the JSON string quoted, with its quotes, is
// one of fields, and returns it unquoted.
func knownField(quoted []byte, fields []string) (string, bool) {
	text := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(text, '\\') >= 0 {
		var s string
		if err := json.Unmarshal(quoted, &s); err != nil {
			return string(text), false
		}
		text = []byte(s)
	}
	for _, f := range fields {
		if string(text) == f {
			return f, true
		}
	}
	return string(text), false
}

// Timestamps are held as Unix nanoseconds, an int64: these are its first
// and last.
var (
	minTimestamp = time.Unix(0, math.MinInt64)
	maxTimestamp = time.Unix(0, math.MaxInt64)
)

// parseTimestamp accepts RFC 3339 strings and Unix seconds, from 1678 to
// 2262 (Unix seconds from 1970), the times Unix nanoseconds hold. A JSON
// null is no timestamp, as an absent one: the zero time.
func parseTimestamp(raw json.RawMessage) (time.Time, error) {
	if string(raw) == "null" {
		return time.Time{}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("timestamp %q is not RFC 3339", s)
		}
		if t.Before(minTimestamp) || t.After(maxTimestamp) {
			return time.Time{}, fmt.Errorf("timestamp %q is out of range: want a time from 1678 to 2262", s)
		}
		return t, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return time.Time{}, fmt.Errorf("timestamp %s is neither RFC 3339 nor Unix seconds", raw)
	}
	if f >= float64(maxTimestamp.Unix()) {
		// 1.8e12 is now in milliseconds, the year 58000 in seconds.
		return time.Time{}, fmt.Errorf("timestamp %s is out of range: want Unix seconds, below %d (the year 2262), not milliseconds", raw, maxTimestamp.Unix())
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// toRecord converts an observation into the record shape the parsers
// produce. A prediction that is an object, or a list of objects, is read
// by objects, and rec's prediction then points into its memory until its
// next use.
func toRecord(o *Observation, rec *payload.Record, objects *objectPredictions) (string, error) {
	rec.Features = rec.Features[:0]
	rec.Scores, rec.ScoreLabels, rec.Confidence, rec.HasConfidence = nil, nil, 0, false
	for name, v := range o.Features {
		val, err := toValue(v)
		if err != nil {
			return rejectInvalidFeature, fmt.Errorf("feature %q: %w", name, err)
		}
		rec.Features = append(rec.Features, payload.Feature{Name: []byte(name), Value: val})
	}
	rec.Prediction = payload.Value{}
	switch p := o.Prediction.(type) {
	case map[string]any:
		return objects.read(p, rec)
	case []any:
		if len(p) > 0 && !slices.ContainsFunc(p, func(e any) bool { _, ok := e.(map[string]any); return !ok }) {
			return objects.read(p, rec)
		}
		rec.Scores = make([]float64, len(p))
		for i, e := range p {
			if s, ok := e.(string); ok {
				if f, ok := nonfinite.Value(s); ok {
					rec.Scores[i] = f
					continue
				}
			}
			n, ok := e.(json.Number)
			if !ok {
				return rejectInvalidPrediction, fmt.Errorf("prediction[%d] is not a number", i)
			}
			f, err := number(n)
			if err != nil {
				return rejectInvalidPrediction, fmt.Errorf("prediction[%d]: %w", i, err)
			}
			rec.Scores[i] = f
		}
	default:
		val, err := toValue(p)
		if err != nil {
			return rejectInvalidPrediction, fmt.Errorf("prediction: %w", err)
		}
		rec.Prediction = val
	}
	return "", nil
}

// objectPredictions reads pushed predictions that are objects, or lists of
// them, with the rules the proxy reads a plain JSON answer by
// (payload.FormatJSON): the prediction, class scores with their names, and
// a named class's confidence. Its parser is made on first use.
type objectPredictions struct {
	p   *payload.Parser
	b   payload.Batch
	raw []byte
}

func (op *objectPredictions) read(v any, rec *payload.Record) (string, error) {
	raw, err := appendJSON(op.raw[:0], v)
	if err != nil {
		return rejectInvalidPrediction, fmt.Errorf("prediction: %w", err)
	}
	op.raw = raw
	if op.p == nil {
		op.p = payload.NewParser(payload.Options{})
	}
	if err := op.p.Parse(payload.FormatJSON, []byte("{}"), raw, &op.b); err != nil {
		return rejectInvalidPrediction, fmt.Errorf("prediction: %w", err)
	}
	r := op.b.Records[0] // the request {} is one instance
	rec.Prediction, rec.Scores, rec.ScoreLabels = r.Prediction, r.Scores, r.ScoreLabels
	rec.Confidence, rec.HasConfidence = r.Confidence, r.HasConfidence
	return "", nil
}

// appendJSON appends v, a value encoding/json decoded with UseNumber, to b
// as JSON, as json.Marshal would but that the strings nonfinite.Quote put
// in place of NaN, Infinity and -Infinity are those words again: the
// payload parser then reads them as the numbers the proxy reads, where a
// string would not be a score or a confidence.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case json.Number:
		return append(b, x...), nil
	case string:
		if w, ok := nonfinite.Word(x); ok {
			return append(b, w...), nil
		}
		q, err := json.Marshal(x)
		return append(b, q...), err
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(x)) {
			if i > 0 {
				b = append(b, ',')
			}
			q, err := json.Marshal(k)
			if err != nil {
				return nil, err
			}
			b = append(append(b, q...), ':')
			if b, err = appendJSON(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, fmt.Errorf("unexpected %T in JSON", v)
}

// number returns the value of n. A number too large for a float64, such
// as 1e999, is ±Inf, as the proxy's parser reads it, so that it counts as an
// invalid value (inf) rather than making its record invalid.
func number(n json.Number) (float64, error) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("number %s is malformed", n)
	}
	return f, nil
}

func toValue(v any) (payload.Value, error) {
	switch x := v.(type) {
	case nil:
		return payload.Value{Kind: payload.KindMissing}, nil
	case json.Number:
		f, err := number(x)
		if err != nil {
			return payload.Value{}, err
		}
		return payload.Value{Kind: payload.KindNumber, Num: f}, nil
	case string:
		if f, ok := nonfinite.Value(x); ok {
			return payload.Value{Kind: payload.KindNumber, Num: f}, nil
		}
		return payload.Value{Kind: payload.KindString, Str: []byte(x)}, nil
	case bool:
		n := 0.0
		if x {
			n = 1
		}
		return payload.Value{Kind: payload.KindBool, Num: n}, nil
	}
	return payload.Value{}, fmt.Errorf("want a number, string, boolean or null, got %T", v)
}

// initPushMetrics creates the push API's counters at zero.
func initPushMetrics(m *collector.Metrics) {
	for _, r := range rejectReasons {
		m.ObservationsRejected.WithLabelValues(r)
	}
}
