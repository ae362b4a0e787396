package alertd

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// operatorKind drives the tests of one kind of operator item through the
// API: maintenance windows and suppression rules.
type operatorKind struct {
	name string
	// file is the item's file under --storage.path.
	file string
	// create posts an item that ends well after now, and returns its id.
	create func(t *testing.T, a *testAlertd, name string) string
	// path is the API's collection, for GET and DELETE.
	path string
}

var operatorKinds = []operatorKind{
	{
		name: "maintenance windows", file: "maintenance_windows.json", path: "/api/v1/maintenance_windows",
		create: func(t *testing.T, a *testAlertd, name string) string {
			return createWindow(t, a, `{"name": "`+name+`", "matchers": ["model=\"`+name+`\""],
				"time_intervals": [{"weekdays": ["saturday"]}], "expires_at": "`+a.opts.Now().Add(24*time.Hour).UTC().Format(time.RFC3339)+`"}`)
		},
	},
	{
		name: "suppression rules", file: "suppressions.json", path: "/api/v1/suppressions",
		create: func(t *testing.T, a *testAlertd, name string) string {
			code, body := post(t, a.URL+"/api/v1/suppressions", "application/json",
				`{"matchers": ["model=\"`+name+`\""], "duration": "1d", "comment": "`+name+`"}`)
			require.Equal(t, http.StatusOK, code, body)
			var r struct {
				Data struct {
					ID string `json:"suppressionID"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &r))
			require.NotEmpty(t, r.Data.ID)
			return r.Data.ID
		},
	},
}

// expired creates an item and expires it at once (DELETE): it ends now.
func (k operatorKind) expired(t *testing.T, a *testAlertd, name string) string {
	t.Helper()
	id := k.create(t, a, name)
	req, err := http.NewRequest(http.MethodDelete, a.URL+k.path+"/"+id, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return id
}

// listed returns the state of each listed item by id.
func (k operatorKind) listed(t *testing.T, a *testAlertd) map[string]string {
	t.Helper()
	code, r := apiGet(t, a.URL+k.path)
	require.Equal(t, http.StatusOK, code)
	var items []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &items))
	out := map[string]string{}
	for _, it := range items {
		out[it.ID] = it.State
	}
	return out
}

// gone waits for an item to leave the list.
func (k operatorKind) gone(t *testing.T, a *testAlertd, id, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { _, ok := k.listed(t, a)[id]; return !ok }, 30*time.Second, 20*time.Millisecond, msg)
}

// inFile reports whether the item is kept in its file.
func (k operatorKind) inFile(t *testing.T, dir, id string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", k.file))
	require.NoError(t, err)
	return strings.Contains(string(b), `"id":"`+id+`"`)
}

// leavesFile waits for the item to leave its file: the garbage collection
// writes the file once it has forgotten the item, not before.
func (k operatorKind) leavesFile(t *testing.T, dir, id string) {
	t.Helper()
	require.Eventually(t, func() bool { return !k.inFile(t, dir, id) }, 30*time.Second, 20*time.Millisecond,
		"a forgotten item is still in %s", k.file)
}

// Expired maintenance windows and suppression rules of the API stay
// listed, and in their files, for their retention (120h by default, as
// silences) after they end, whatever --alerts.resolved-retention (1h)
// says, and across a restart; then they are forgotten. Each check that one
// is still kept waits for the pass of the loop that forgets another that
// ended earlier, so the garbage collection has run on the moved clock.
func TestOperatorItemRetention(t *testing.T) {
	t.Parallel()
	for _, k := range operatorKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			clock := &testClock{}
			dir := t.TempDir()
			writeFile(t, dir, "alertd.yml", "route:\n  receiver: r\nreceivers:\n  - name: r\n")
			o, logs := newOptions(t, dir)
			o.Now = clock.Now
			o.ResolvedRetention = time.Hour
			a := start(t, dir, o, logs)

			// a ends now, s 2h later, b 118h later; 2h after b's end, a
			// is past 120h.
			ia := k.expired(t, a, "a")
			clock.skip(2 * time.Hour)
			is := k.expired(t, a, "s")
			clock.skip(116 * time.Hour)
			ib := k.expired(t, a, "b")
			clock.skip(2*time.Hour + time.Minute)
			k.gone(t, a, ia, "an item that ended more than 120h ago is still listed")
			require.Equal(t, map[string]string{is: "expired", ib: "expired"}, k.listed(t, a),
				"an item that ended 2h ago (or 118h ago) is no longer listed")
			k.leavesFile(t, dir, ia)
			require.True(t, k.inFile(t, dir, ib))

			// After a restart, s goes at its 120h, b stays.
			require.NoError(t, a.Stop())
			second := start(t, dir, o, logs)
			clock.skip(2 * time.Hour)
			k.gone(t, second, is, "an item that ended more than 120h ago is still listed after a restart")
			require.Equal(t, map[string]string{ib: "expired"}, k.listed(t, second), "the restart lost an item that ended 4h ago")
			require.True(t, k.inFile(t, dir, ib))

			// 120h after b's end, b goes too.
			clock.skip(116 * time.Hour)
			k.gone(t, second, ib, "an item that ended more than 120h ago is still listed")
			k.leavesFile(t, dir, ib)
		})
	}
}

// MaintenanceRetention and SuppressionRetention, not ResolvedRetention or
// SilenceRetention, decide when each kind is forgotten.
func TestOperatorItemRetentionOptions(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	a := startAlertd(t, "route:\n  receiver: r\nreceivers:\n  - name: r\n", nil, func(o *Options) {
		clock.options()(o)
		o.ResolvedRetention = 200 * time.Hour
		o.SilenceRetention = 200 * time.Hour
		o.MaintenanceRetention = 3 * time.Hour
		o.SuppressionRetention = 5 * time.Hour
	})
	windows, rules := operatorKinds[0], operatorKinds[1]
	w := windows.expired(t, a, "w")
	r := rules.expired(t, a, "r")
	clock.skip(3*time.Hour + time.Minute)
	windows.gone(t, a, w, "an expired maintenance window outlived MaintenanceRetention")
	require.Contains(t, rules.listed(t, a), r, "an expired suppression rule was forgotten before SuppressionRetention")
	clock.skip(2 * time.Hour)
	rules.gone(t, a, r, "an expired suppression rule outlived SuppressionRetention")
}
