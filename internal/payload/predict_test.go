package payload

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPredictionRules checks how one instance's prediction value becomes Prediction and Scores.
func TestPredictionRules(t *testing.T) {
	for _, tc := range []struct {
		name, resp   string
		output       string
		pred, scores string
		reason       Reason
	}{
		{name: "number", resp: `[3.5]`, pred: "3.5"},
		{name: "string", resp: `["cat"]`, pred: `"cat"`},
		{name: "bool", resp: `[true]`, pred: "true"},
		{name: "null", resp: `[null]`, pred: "null"},
		{name: "one-element vector", resp: `[[0.7]]`, pred: "0.7"},
		{name: "nested one-element vector", resp: `[[[["x"]]]]`, pred: `"x"`},
		{name: "vector", resp: `[[0.1, 0.2, 0.7]]`, pred: "null", scores: "0.1 0.2 0.7"},
		{name: "nested vector", resp: `[[[0.1, 0.9], [0.4, 0.6]]]`, pred: "null", scores: "0.1 0.9 0.4 0.6"},
		{name: "vector with bools and null", resp: `[[true, false, null]]`, pred: "null", scores: "1 0 NaN"},
		{name: "vector of strings", resp: `[["a", "b"]]`, pred: "null"},
		{name: "mixed vector", resp: `[[1, "b"]]`, pred: "null"},
		{name: "empty vector", resp: `[[]]`, pred: "null"},
		{name: "classify pairs", resp: `[[["cat", 0.2], ["dog", 0.7], ["eel", 0.1]]]`, pred: `"dog"`, scores: "0.2 0.7 0.1"},
		{name: "single classify pair", resp: `[[["cat", 0.2]]]`, pred: `"cat"`, scores: "0.2"},
		{name: "classify pairs without labels", resp: `[[["", 0.2], ["", 0.7]]]`, pred: "null", scores: "0.2 0.7"},
		{name: "label and probabilities", resp: `[{"probabilities": [0.1, 0.9], "label": "yes"}]`, pred: `"yes"`, scores: "0.1 0.9"},
		{name: "key order of preference", resp: `[{"score": 0.9, "class": "b", "prediction": "a"}]`, pred: `"a"`},
		{name: "keys ignore case", resp: `[{"Predicted_Label": "a"}]`, pred: `"a"`},
		{name: "first vector wins", resp: `[{"logits": [2, 1], "probabilities": [0.7, 0.3]}]`, pred: "null", scores: "0.7 0.3"},
		{name: "TF estimator output", resp: `[{"class_ids": [1], "classes": ["1"], "logistic": [0.7], "logits": [0.85], "probabilities": [0.3, 0.7]}]`,
			pred: `"1"`, scores: "0.3 0.7"},
		{name: "nested object", resp: `[{"output": {"label": "z"}}]`, pred: `"z"`},
		{name: "single unknown field", resp: `[{"yhat": [0.2, 0.8]}]`, pred: "null", scores: "0.2 0.8"},
		{name: "numeric fields", resp: `[{"a": 0.2, "b": "x", "c": 0.8}]`, pred: "null", scores: "0.2 0.8"},
		{name: "one numeric field", resp: `[{"a": 0.2, "b": "x"}]`, pred: "0.2"},
		{name: "no usable field", resp: `[{"a": "x", "b": "y"}]`, pred: "null", reason: ReasonMissingField},
		{name: "empty object", resp: `[{}]`, pred: "null", reason: ReasonMissingField},
		{name: "error field", resp: `[{"error": "boom"}]`, pred: "null", reason: ReasonInvalidResponse},
		{name: "error field beside a prediction", resp: `[{"error": null, "label": "a"}]`, pred: `"a"`},
		{name: "Output field", output: "p1", resp: `[{"p0": 0.4, "p1": 0.6, "label": "x"}]`, pred: "0.6"},
		{name: "Output field is a vector", output: "probs", resp: `[{"probs": [0.4, 0.6], "label": "x"}]`, pred: "null", scores: "0.4 0.6"},
		{name: "malformed number", resp: `[[1, 2e]]`, pred: "null", reason: ReasonInvalidResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			p := NewParser(Options{Output: tc.output})
			err := p.Parse(FormatKServeV1, []byte(`{"instances": [[1]]}`), []byte(`{"predictions": `+tc.resp+`}`), &b)
			require.Equal(t, tc.reason, reasonOf(t, err), "error: %v", err)
			require.Equal(t, []plainRecord{rec(tc.pred, tc.scores, "0=1")}, plain(&b).Records)
		})
	}
}

// TestClassConfidence checks the confidence of a named class and the
// class names of scores, in the shapes Hugging Face pipelines and
// TF-Serving's classify answer.
func TestClassConfidence(t *testing.T) {
	for _, tc := range []struct {
		name, resp string
		instances  int
		pred       []string
		confidence []float64 // -1: none
		labels     []string  // per instance, the ScoreLabels joined by spaces
		scores     []string
	}{
		{name: "label and score", resp: `[{"label": "POSITIVE", "score": 0.98}]`, instances: 1,
			pred: []string{`"POSITIVE"`}, confidence: []float64{0.98}, labels: []string{""}, scores: []string{""}},
		{name: "label and score, batch", resp: `[{"label": "POSITIVE", "score": 0.98}, {"label": "NEGATIVE", "score": 0.7}]`, instances: 2,
			pred: []string{`"POSITIVE"`, `"NEGATIVE"`}, confidence: []float64{0.98, 0.7}, labels: []string{"", ""}, scores: []string{"", ""}},
		{name: "synonyms and case", resp: `[{"Class": "cat", "Confidence": 0.5}, {"predicted_label": true, "probability": 0}]`, instances: 2,
			pred: []string{`"cat"`, "true"}, confidence: []float64{0.5, 0}, labels: []string{"", ""}, scores: []string{"", ""}},
		{name: "score out of range", resp: `[{"label": "a", "score": 7.5}]`, instances: 1,
			pred: []string{`"a"`}, confidence: []float64{-1}, labels: []string{""}, scores: []string{""}},
		{name: "numeric prediction has no confidence", resp: `[{"prediction": 3, "score": 0.5}]`, instances: 1,
			pred: []string{"3"}, confidence: []float64{-1}, labels: []string{""}, scores: []string{""}},
		{name: "probabilities beside", resp: `[{"label": "b", "score": 0.5, "probabilities": [0.4, 0.6]}]`, instances: 1,
			pred: []string{`"b"`}, confidence: []float64{-1}, labels: []string{""}, scores: []string{"0.4 0.6"}},
		{name: "top_k list, sorted by score", resp: `[[{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}]]`, instances: 1,
			pred: []string{`"POSITIVE"`}, confidence: []float64{-1}, labels: []string{"POSITIVE NEGATIVE"}, scores: []string{"0.9 0.1"}},
		{name: "top_k list for a batch", resp: `[[{"label": "a", "score": 0.2}, {"label": "b", "score": 0.8}], [{"label": "b", "score": 0.6}, {"label": "a", "score": 0.4}]]`,
			instances: 2, pred: []string{`"b"`, `"b"`}, confidence: []float64{-1, -1}, labels: []string{"a b", "b a"}, scores: []string{"0.2 0.8", "0.6 0.4"}},
		{name: "classify pairs name their scores", resp: `[[["cat", 0.2], ["dog", 0.8]]]`, instances: 1,
			pred: []string{`"dog"`}, confidence: []float64{-1}, labels: []string{"cat dog"}, scores: []string{"0.2 0.8"}},
		{name: "pairs without labels", resp: `[[["", 0.2], ["", 0.8]]]`, instances: 1,
			pred: []string{"null"}, confidence: []float64{-1}, labels: []string{""}, scores: []string{"0.2 0.8"}},
		{name: "zero-shot labels and scores", resp: `[{"sequence": "a trip", "labels": ["travel", "cooking"], "scores": [0.9, 0.1]}]`, instances: 1,
			pred: []string{`"travel"`}, confidence: []float64{-1}, labels: []string{"travel cooking"}, scores: []string{"0.9 0.1"}},
		{name: "classes of another length", resp: `[{"classes": ["1"], "probabilities": [0.3, 0.7]}]`, instances: 1,
			pred: []string{`"1"`}, confidence: []float64{-1}, labels: []string{""}, scores: []string{"0.3 0.7"}},
		{name: "list with an object that is not a class", resp: `[[{"label": "a", "score": 0.2}, {"label": "b"}]]`, instances: 1,
			pred: []string{"null"}, confidence: []float64{-1}, labels: []string{""}, scores: []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			p := NewParser(Options{})
			req := `{"instances": [[1]]}`
			if tc.instances == 2 {
				req = `{"instances": [[1], [2]]}`
			}
			require.NoError(t, p.Parse(FormatKServeV1, []byte(req), []byte(`{"predictions": `+tc.resp+`}`), &b))
			require.Len(t, b.Records, tc.instances)
			pl := plain(&b).Records
			for i, r := range b.Records {
				require.Equal(t, tc.pred[i], pl[i].Prediction, "instance %d", i)
				require.Equal(t, tc.scores[i], pl[i].Scores, "instance %d", i)
				require.Equal(t, tc.confidence[i] >= 0, r.HasConfidence, "instance %d", i)
				if r.HasConfidence {
					require.Equal(t, tc.confidence[i], r.Confidence, "instance %d", i)
				}
				var labels []string
				for _, l := range r.ScoreLabels {
					labels = append(labels, string(l))
				}
				require.Equal(t, tc.labels[i], strings.Join(labels, " "), "instance %d", i)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	require.Equal(t, "missing", KindMissing.String())
	require.Equal(t, "number", KindNumber.String())
	require.Equal(t, "string", KindString.String())
	require.Equal(t, "bool", KindBool.String())
	require.Equal(t, "missing", Kind(9).String())
}
