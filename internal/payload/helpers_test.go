package payload

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// plainRecord is a Record in comparable form. Features are "name=value"; values are
// numbers in Go's shortest form (NaN, +Inf, -Inf), quoted strings, true/false, or null.
// Scores are space-separated numbers.
type plainRecord struct {
	Features   []string
	Prediction string
	Scores     string
}

type plainBatch struct {
	Format  string
	Records []plainRecord
	Dropped int
}

func plainValue(v Value) string {
	switch v.Kind {
	case KindNumber:
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case KindString:
		return strconv.Quote(string(v.Str))
	case KindBool:
		return strconv.FormatBool(v.Num != 0)
	}
	return "null"
}

func plain(b *Batch) plainBatch {
	pb := plainBatch{Format: b.Format.String(), Dropped: b.DroppedFeatures}
	for _, r := range b.Records {
		pr := plainRecord{Prediction: plainValue(r.Prediction), Features: []string{}}
		for _, f := range r.Features {
			pr.Features = append(pr.Features, string(f.Name)+"="+plainValue(f.Value))
		}
		s := make([]string, len(r.Scores))
		for i, x := range r.Scores {
			s[i] = strconv.FormatFloat(x, 'g', -1, 64)
		}
		pr.Scores = strings.Join(s, " ")
		pb.Records = append(pb.Records, pr)
	}
	return pb
}

// rec builds an expected record: prediction, scores, then features.
func rec(pred, scores string, features ...string) plainRecord {
	if features == nil {
		features = []string{}
	}
	return plainRecord{Features: features, Prediction: pred, Scores: scores}
}

// reasonOf returns the Reason of err, "" for nil, and fails for errors that are not *Error.
func reasonOf(t testing.TB, err error) Reason {
	t.Helper()
	if err == nil {
		return ""
	}
	var pe *Error
	require.True(t, errors.As(err, &pe), "error %v is not *Error", err)
	return pe.Reason
}

// parseCase is a table row shared by the per-format tests.
type parseCase struct {
	name       string
	opts       Options
	format     Format
	req, resp  string
	want       []plainRecord
	wantFormat Format // if not FormatUnknown, the detected format
	reason     Reason // "" for success
	dropped    int
}

func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParser(tc.opts)
			var b Batch
			err := p.Parse(tc.format, []byte(tc.req), []byte(tc.resp), &b)
			require.Equal(t, tc.reason, reasonOf(t, err), "error: %v", err)
			got := plain(&b)
			if tc.wantFormat != FormatUnknown {
				require.Equal(t, tc.wantFormat.String(), got.Format)
			}
			require.Equal(t, tc.want, got.Records)
			require.Equal(t, tc.dropped, got.Dropped)

			// The same Parser and Batch give the same result on reuse.
			require.NoError(t, func() error {
				_ = p.Parse(FormatJSON, []byte(`{"x":1,"y":[1,2]}`), []byte(`{"prediction":"z"}`), &b)
				return nil
			}())
			err2 := p.Parse(tc.format, []byte(tc.req), []byte(tc.resp), &b)
			require.Equal(t, tc.reason, reasonOf(t, err2))
			require.Equal(t, got, plain(&b))
		})
	}
}
