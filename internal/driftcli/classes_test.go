package driftcli

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/predclass/predclasstest"
)

// TestClassColumnsCases reads the shared cases of a prediction given by
// position as `exporter drift` reads its data: one number in the column
// label, a vector in the columns label.0, label.1, …
func TestClassColumnsCases(t *testing.T) {
	f := &drift.Feature{Name: "label", Kind: drift.Categorical}
	for _, c := range predclasstest.Cases {
		if len(c.Classes) == 0 || len(c.Scores) == 0 {
			continue // classColumns reads nothing so
		}
		t.Run(c.Name, func(t *testing.T) {
			var cur []drift.Column
			if len(c.Scores) == 1 && !c.Vector {
				cur = []drift.Column{{Name: "label", Num: c.Scores}}
			} else {
				for k, x := range c.Scores {
					cur = append(cur, drift.Column{Name: "label." + strconv.Itoa(k), Num: []float64{x}})
				}
			}
			cols, unnamed := classColumns(f, c.Classes, cur)
			require.Len(t, cols, 1)
			if c.Want == "" {
				require.Equal(t, uint64(1), unnamed)
				require.Empty(t, cols[0].Str)
				return
			}
			require.Zero(t, unnamed)
			require.Equal(t, []string{c.Want}, cols[0].Str)
		})
	}
}
