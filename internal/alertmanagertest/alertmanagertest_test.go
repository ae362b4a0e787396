package alertmanagertest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStart(t *testing.T) {
	am := Start(t, "route:\n  receiver: none\nreceivers:\n  - name: none\n")

	body := `[{"labels":{"alertname":"Up","job":"x"},"annotations":{"summary":"s"}}]`
	resp, err := http.Post(am.URL+"/api/v2/alerts", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	alerts, err := am.Alerts(t.Context())
	require.NoError(t, err)
	require.Len(t, alerts, 1)
	require.Equal(t, "Up", alerts[0].Labels["alertname"])
	require.Equal(t, "s", alerts[0].Annotations["summary"])
	require.WithinDuration(t, time.Now(), time.Time(*alerts[0].StartsAt), time.Minute)
}
