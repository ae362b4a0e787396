package payload

import (
	"bytes"
	"io"
	"math"
	"mime/multipart"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The cases follow Seldon Core 1's documentation of its prediction API
// and what its Python wrapper answers.
func TestSeldon(t *testing.T) {
	runParseCases(t, []parseCase{
		{
			name:       "ndarray with names, detected",
			req:        `{"data": {"names": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "ndarray": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]}}`,
			resp:       `{"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.9, 0.05, 0.05], [0.01, 0.2, 0.79]]}, "meta": {"puid": "a1b2", "requestPath": {"classifier": "seldonio/sklearnserver:1.18.0"}}}`,
			wantFormat: FormatSeldon,
			want: []plainRecord{
				rec("null", "0.9 0.05 0.05", "sepal_length=5.1", "sepal_width=3.5", "petal_length=1.4", "petal_width=0.2"),
				rec("null", "0.01 0.2 0.79", "sepal_length=6.2", "sepal_width=3.4", "petal_length=5.4", "petal_width=2.3"),
			},
		},
		{
			name:   "ndarray without names, one prediction per row",
			format: FormatSeldon,
			req:    `{"data": {"ndarray": [[1, "x"], [2, "y"]]}}`,
			resp:   `{"data": {"names": [], "ndarray": [1, 0]}}`,
			want:   []plainRecord{rec("1", "", "0=1", `1="x"`), rec("0", "", "0=2", `1="y"`)},
		},
		{
			name:   "fewer names than columns: the configuration's, then positions",
			opts:   Options{FeatureNames: []string{"c0", "c1", "c2"}},
			format: FormatSeldon,
			req:    `{"data": {"names": ["a"], "ndarray": [[1, 2, 3, 4]]}}`,
			want:   []plainRecord{rec("null", "", "a=1", "c1=2", "c2=3", "3=4")},
		},
		{
			name:       "tensor",
			req:        `{"meta": {}, "data": {"names": ["a", "b", "c"], "tensor": {"shape": [2, 3], "values": [1, 2, 3, 4, 5, 6]}}}`,
			resp:       `{"data": {"names": ["proba"], "tensor": {"shape": [2, 1], "values": [0.25, 0.75]}}}`,
			wantFormat: FormatSeldon,
			want:       []plainRecord{rec("0.25", "", "a=1", "b=2", "c=3"), rec("0.75", "", "a=4", "b=5", "c=6")},
		},
		{
			name:   "tensor of scores",
			format: FormatSeldon,
			req:    `{"data": {"tensor": {"shape": [1, 2], "values": [1, 2]}}}`,
			resp:   `{"data": {"tensor": {"shape": [1, 3], "values": [0.2, 0.3, 0.5]}}}`,
			want:   []plainRecord{rec("null", "0.2 0.3 0.5", "0=1", "1=2")},
		},
		{
			name:       "jsonData",
			req:        `{"jsonData": {"user": {"age": 42}, "tags": ["a"]}}`,
			resp:       `{"jsonData": {"prediction": "churn", "probabilities": [0.3, 0.7]}, "meta": {}}`,
			wantFormat: FormatSeldon,
			want:       []plainRecord{rec(`"churn"`, "0.3 0.7", "user.age=42", `tags.0="a"`)},
		},
		{
			name:       "strData: an instance without features or prediction",
			req:        `{"strData": "The quick brown fox"}`,
			resp:       `{"strData": "le renard brun rapide"}`,
			wantFormat: FormatSeldon,
			want:       []plainRecord{rec("null", "")},
		},
		{
			// A binData message is an image (a file, a tensor in its own
			// form): one instance, opaque, and an answer in binData
			// predicts nothing the sidecar reads, without an error.
			name:       "binData: an opaque instance",
			req:        `{"binData": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "meta": {"tags": {"camera": "front"}}}`,
			resp:       `{"binData": "iVBORw0KGgo=", "meta": {"puid": "b1"}}`,
			wantFormat: FormatSeldon,
			want:       []plainRecord{rec("null", "")},
		},
		{
			name:   "binData answered with a class and its scores",
			format: FormatSeldon,
			req:    `{"binData": "aGVsbG8="}`,
			resp:   `{"data": {"names": ["cat", "dog"], "ndarray": [[0.8, 0.2]]}}`,
			want:   []plainRecord{rec("null", "0.8 0.2")},
		},
		{
			// strData in an answer is free text (a caption, a
			// translation), not a class: no prediction, and no error.
			name:   "rows answered with binData or strData",
			format: FormatSeldon,
			req:    `{"data": {"ndarray": [[1], [2]]}}`,
			resp:   `{"strData": "two rows, seen"}`,
			want:   []plainRecord{rec("null", "", "0=1"), rec("null", "", "0=2")},
		},
		{
			name:   "a failure status",
			format: FormatSeldon,
			req:    `{"data": {"ndarray": [[1]]}}`,
			resp:   `{"status": {"code": 500, "info": "model failed", "reason": "MICROSERVICE_INTERNAL_ERROR", "status": "FAILURE"}}`,
			want:   []plainRecord{rec("null", "", "0=1")},
			reason: ReasonInvalidResponse,
		},
		{
			name:   "a response of another batch size",
			format: FormatSeldon,
			req:    `{"data": {"tensor": {"shape": [2, 1], "values": [1, 2]}}}`,
			resp:   `{"data": {"tensor": {"shape": [1, 1], "values": [1]}}}`,
			want:   []plainRecord{rec("null", "", "0=1"), rec("null", "", "0=2")},
			reason: ReasonShapeMismatch,
		},
		{
			name:   "a tensor whose values do not fill its shape",
			format: FormatSeldon,
			req:    `{"data": {"tensor": {"shape": [2, 2], "values": [1, 2, 3]}}}`,
			reason: ReasonShapeMismatch,
		},
		{
			name:   "a shape that would overflow",
			format: FormatSeldon,
			req:    `{"data": {"tensor": {"shape": [4294967296, 4294967296], "values": []}}}`,
			reason: ReasonShapeMismatch,
		},
		{
			name:   "more instances than allowed",
			opts:   Options{MaxInstances: 2},
			format: FormatSeldon,
			req:    `{"data": {"tensor": {"shape": [3], "values": [1, 2, 3]}}}`,
			reason: ReasonTooManyInstances,
		},
		{
			name:   "names that are not strings",
			format: FormatSeldon,
			req:    `{"data": {"names": [1], "ndarray": [[1]]}}`,
			reason: ReasonTypeMismatch,
		},
		{
			name:   "no data",
			format: FormatSeldon,
			req:    `{"meta": {"tags": {}}}`,
			reason: ReasonMissingField,
		},
		{
			// Seldon's Python wrapper takes a form too: curl -F
			// binData=@cat.png. The request is one opaque instance.
			name:   "a form with binData",
			format: FormatSeldon,
			req:    form("binData", "cat.png", "\x89PNG\r\n\x1a\n\x00\x00--\r\n", "meta", "", `{"tags": {"camera": "front"}}`),
			resp:   `{"data": {"ndarray": ["cat"]}, "meta": {"puid": "f1"}}`,
			want:   []plainRecord{rec(`"cat"`, "")},
		},
		{
			name:       "a form with strData, detected",
			req:        form("strData", "", "Le renard brun rapide, \"vite\"\n"),
			resp:       `{"strData": "The quick brown fox"}`,
			wantFormat: FormatSeldon,
			want:       []plainRecord{rec("null", "")},
		},
		{
			// Every other field is the JSON of its value.
			name:       "a form with data, detected",
			req:        form("data", "", `{"names": ["a", "b"], "ndarray": [[1, 2], [3, "x"]]}`),
			resp:       `{"data": {"ndarray": [0.5, 0.25]}}`,
			wantFormat: FormatSeldon,
			want:       []plainRecord{rec("0.5", "", "a=1", "b=2"), rec("0.25", "", "a=3", `b="x"`)},
		},
		{
			name:   "a form whose data is not JSON",
			format: FormatSeldon,
			req:    form("data", "", "[[1, 2"),
			reason: ReasonInvalidJSON,
		},
		{
			// Any other form is no SeldonMessage: not JSON, as before.
			name:   "a form of no SeldonMessage, detected",
			req:    form("file", "a.csv", "x,y\n1,2\n"),
			reason: ReasonInvalidJSON,
		},
		{
			name:   "a form cut short",
			format: FormatSeldon,
			req:    strings.TrimSuffix(form("binData", "cat.png", "\x89PNG"), "--\r\n"),
			reason: ReasonInvalidJSON,
		},
		{
			// Plain JSON with a "data" field that is not Seldon's stays plain JSON.
			name:       "plain JSON with a data field",
			req:        `{"data": {"x": 1}}`,
			wantFormat: FormatJSON,
			want:       []plainRecord{rec("null", "", "data.x=1")},
		},
	})
}

// form returns a multipart/form-data body of the fields given as name,
// file name ("" for a text field) and value, as Python's requests writes
// it.
func form(fields ...string) string {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for i := 0; i+2 < len(fields); i += 3 {
		name, file, value := fields[i], fields[i+1], fields[i+2]
		var part io.Writer
		var err error
		if file != "" {
			part, err = w.CreateFormFile(name, file)
		} else {
			part, err = w.CreateFormField(name)
		}
		if err != nil {
			panic(err)
		}
		io.WriteString(part, value)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return b.String()
}

func TestSeldonFeedback(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Feedback
		records    []plainRecord
		reason     Reason
	}{
		{name: "a truth per instance",
			body: `{"request": {"data": {"ndarray": [[1, 2], [3, 4]]}}, "response": {"meta": {"puid": "p-1"}, "data": {"ndarray": [0, 1]}}, "reward": 1, "truth": {"data": {"ndarray": [[0], [1]]}}}`,
			want: Feedback{Puid: []byte("p-1"), Reward: 1, Truth: true}, records: []plainRecord{rec("null", "", "0=0"), rec("null", "", "0=1")}},
		{name: "a class, named",
			body: `{"response": {"meta": {"puid": "p-2"}}, "truth": {"data": {"names": ["species"], "ndarray": [["setosa"]]}}}`,
			want: Feedback{Puid: []byte("p-2"), Truth: true}, records: []plainRecord{rec("null", "", `species="setosa"`)}},
		{name: "no puid",
			body: `{"truth": {"data": {"tensor": {"shape": [1], "values": [2.5]}}}}`,
			want: Feedback{Truth: true}, records: []plainRecord{rec("null", "", "0=2.5")}},
		{name: "a reward alone", body: `{"response": {"meta": {"puid": "p-3"}}, "reward": -0.25}`, want: Feedback{Puid: []byte("p-3"), Reward: -0.25}},
		// protobuf's JSON mapping lets a float be a string.
		{name: "a reward in a string", body: `{"reward": "0.75", "truth": null}`, want: Feedback{Reward: 0.75}},
		{name: "a reward of null", body: `{"reward": null}`},
		{name: "a reward that is no number", body: `{"reward": true}`, reason: ReasonTypeMismatch},
		{name: "a reward in a string that is no number", body: `{"reward": "high"}`, reason: ReasonTypeMismatch},
		{name: "an infinite reward", body: `{"reward": "Infinity"}`, reason: ReasonTypeMismatch},
		{name: "a NaN reward", body: `{"reward": "NaN", "truth": {"data": {"ndarray": [[1]]}}}`, reason: ReasonTypeMismatch},
		{name: "a form", body: form("response", "", `{"meta": {"puid": "p-5"}}`, "reward", "", "0.5", "truth", "", `{"data": {"ndarray": [["cat"]]}}`),
			want: Feedback{Puid: []byte("p-5"), Reward: 0.5, Truth: true}, records: []plainRecord{rec("null", "", `0="cat"`)}},
		{name: "not JSON", body: `{"truth": `, reason: ReasonInvalidJSON},
		{name: "not an object", body: `[1]`, reason: ReasonTypeMismatch},
		{name: "empty", body: " ", reason: ReasonEmptyBody},
		{name: "a truth that is no SeldonMessage", body: `{"response": {"meta": {"puid": "p-4"}}, "reward": 1, "truth": [1]}`, reason: ReasonTypeMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			p := NewParser(Options{FeatureNames: []string{"configured"}})
			fb, err := p.SeldonFeedback([]byte(tc.body), &b)
			require.Equal(t, tc.reason, reasonOf(t, err), "%v", err)
			require.Equal(t, tc.want, fb)
			require.Equal(t, tc.records, plain(&b).Records)
		})
	}
}

func FuzzSeldonFeedback(f *testing.F) {
	f.Add([]byte(`{"response": {"meta": {"puid": "p"}}, "truth": {"data": {"names": ["y"], "ndarray": [[0], ["a"], [true]]}}}`))
	f.Add([]byte(`{"truth": {"data": {"tensor": {"shape": [2, 1], "values": [1, 2]}}}}`))
	f.Add([]byte(`{"truth": {"jsonData": {"label": 1}}, "reward": 0}`))
	f.Add([]byte(`{"reward": "-1e3"}`))
	p := NewParser(Options{MaxInstances: 4})
	f.Fuzz(func(t *testing.T, body []byte) {
		var b Batch
		fb, err := p.SeldonFeedback(body, &b)
		checkFeedback(t, fb, err, &b)
		if len(b.Records) > 4 {
			t.Fatalf("%d records, more than MaxInstances", len(b.Records))
		}
	})
}

// checkFeedback checks what a feedback reader gave: nothing with an error,
// records only with a truth, and a finite reward.
func checkFeedback(t *testing.T, fb Feedback, err error, b *Batch) {
	t.Helper()
	if err != nil && (len(b.Records) != 0 || fb.Truth || fb.Reward != 0 || fb.Puid != nil) {
		t.Fatalf("error %v left %d records, feedback %+v", err, len(b.Records), fb)
	}
	if !fb.Truth && len(b.Records) != 0 {
		t.Fatalf("%d records without a truth", len(b.Records))
	}
	if math.IsNaN(fb.Reward) || math.IsInf(fb.Reward, 0) {
		t.Fatalf("reward %v", fb.Reward)
	}
}
