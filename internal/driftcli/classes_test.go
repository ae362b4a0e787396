package driftcli

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/predclass/predclasstest"
)

// TestClassOfCases reads the shared cases of a prediction given by
// position as `exporter drift` does.
func TestClassOfCases(t *testing.T) {
	for _, c := range predclasstest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got := func() (s string) {
				defer func() {
					if recover() != nil {
						s = "<panic>"
					}
				}()
				return classOf(c.Classes, c.Scores)
			}()
			require.Equal(t, c.Offline, got)
		})
	}
}
