package alertd

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// alertd's state files (silences, maintenance windows, suppression rules,
// flap and classifier state, escalations, actions, pushed alerts, model
// versions: all written by writeJSON) are replaced whole or not at all. A
// silence whose write fails (here, on a full disk) is answered with the
// error, and the file keeps the silences it held, with nothing temporary
// beside it, for the next start to read.
func TestStateFileSurvivesAFailedWrite(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	a := startAlertd(t, routes(h, nil, ""), nil, nil)
	path := silencesPath(a.opts.StoragePath)
	kept := createSilence(t, a, `{"matchers":["alertname=\"Kept\""],"duration":"1h"}`)

	var code int
	var body string
	require.NoError(t, statefiletest.FailWrites(t, func() error {
		code, body = post(t, a.URL+"/api/v1/silences", "application/json", `{"matchers":["alertname=\"Lost\""],"duration":"1h"}`)
		return nil
	}, path))
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, "couldn't save silences: ")
	require.Contains(t, body, "no space left on device")

	// What the next start reads.
	s, err := newSilencer(path)
	require.NoError(t, err)
	var ids []string
	for _, sil := range s.list(byEnd) {
		ids = append(ids, sil.ID)
	}
	require.Equal(t, []string{kept}, ids)
}
