package exporter

import (
	"math"
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
			require.Equal(t, c.Want, classOf(c.Classes, &rec))
		})
	}
}

// TestReadPredictionNaNVector: a probability vector holding a NaN predicts
// no class (not counted in modelmon_prediction_class_total), whatever
// place the NaN takes, and keeps its probabilities for the store to refuse.
func TestReadPredictionNaNVector(t *testing.T) {
	classes := []string{"cat", "dog", "bird"}
	for _, sc := range [][]float64{{math.NaN(), 0.2, 0.8}, {0.2, math.NaN(), 0.8}} {
		var binary [2]float64
		pv, ok := readPrediction(classes, &payload.Record{Scores: sc}, &binary)
		require.True(t, ok)
		require.False(t, pv.isClass, "%v", sc)
		require.Len(t, pv.probs, 3)
	}
}
