package exporter

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/predclass/predclasstest"
)

// TestClassOfCases reads the shared cases of a prediction given by
// position as the sidecar does: one number is the record's prediction, a
// vector its scores.
func TestClassOfCases(t *testing.T) {
	for _, c := range predclasstest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			rec := payload.Record{Scores: c.Scores}
			if len(c.Scores) == 1 && !c.Vector {
				rec = payload.Record{Prediction: payload.Value{Kind: payload.KindNumber, Num: c.Scores[0]}}
			}
			require.Equal(t, c.Online, classOf(c.Classes, &rec))
		})
	}
}
