package alertd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/internal/alertmanagertest"
)

// Silences created through the API of a running alertd and of a real
// Alertmanager apply in a replay over their own times, from each form a
// user can save: GET /api/v2/silences's answer (alertd's and
// Alertmanager's), amtool silence query -o json, alertd's silences.json and
// its GET /api/v1/silences. One that begins while an alert fires quiets its
// incident's chain from its start (the path of the configuration's
// silences); one that covers a firing suppresses it; one expired early (or
// updated to end early) ends at its final end; one that expired before it
// began, one after the range and alertd's configuration silence are left
// out. The silences are created ahead of the wall clock (an Alertmanager
// starts a new silence no earlier than now), so the history is written
// from then.
func TestReplaySilencesFile(t *testing.T) {
	t.Parallel()
	start := time.Now().UTC().Truncate(time.Minute).Add(2 * time.Minute)
	at := func(m int) time.Time { return start.Add(time.Duration(m) * time.Minute) }
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	// Model a fails from 60 to 120, b from 150 to 170, c from 250 to 260.
	writeHistoryFrom(t, hist, start, map[string][]float64{
		"errors/a": pattern(300, 0, 5, [2]int{60, 120}),
		"errors/b": pattern(300, 0, 5, [2]int{150, 170}),
		"errors/c": pattern(300, 0, 5, [2]int{250, 260}),
	})
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	cfg := writeReplayConfig(t, dir, "c", strings.ReplaceAll(replayPolicy, "{{WAIT}}", "10m"), replayRules)
	from, to := start, at(299)

	// The same silences through each API: the comment names each.
	// expire ends "c" at 245, through the API's own means.
	m := func(model string) *models.Matcher { return v2Matcher("model", model, false) }
	create := func(base string, expire func(id string)) map[string]string {
		ids := map[string]string{}
		add := func(comment, model string, from, to int) {
			code, id := postV2Silence(t, base, "", at(from), at(to), comment, m(model))
			require.Equal(t, http.StatusOK, code, comment)
			ids[comment] = id
		}
		add("a, while it fires", "a", 70, 90)
		add("b, all its firing", "b", 140, 180)
		add("c, ended before it fires", "c", 240, 300)
		add("d, nothing fires", "d", 100, 110)
		add("after the range", "a", 400, 500)
		add("expired before it began", "a", 20, 40)
		deleteV2Silence(t, base, ids["expired before it began"])
		expire(ids["c, ended before it fires"])
		return ids
	}
	save := func(name string, body []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, body, 0o600))
		return p
	}
	getBody := func(u string) []byte {
		code, body := get(t, u)
		require.Equal(t, http.StatusOK, code, body)
		return []byte(body)
	}

	// alertd, with a silence of its configuration file over all of a's
	// firing. Its expired silences are kept for --silences.retention
	// (120h), so those that ended hours before its clock are listed.
	clock := &testClock{}
	h := newHook(t)
	ad := startAlertd(t, routes(h, nil, fmt.Sprintf("silences:\n  - matchers: ['model=\"a\"']\n    starts_at: %s\n    ends_at: %s\n",
		at(0).Format(time.RFC3339), at(299).Format(time.RFC3339))),
		map[string]string{"rules.yml": "groups: []\n"}, clock.options())
	alertdIDs := create(ad.URL, func(id string) {
		// Expired at 245 on alertd's clock, while active.
		clock.skip(at(245).Sub(clock.Now()))
		deleteV2Silence(t, ad.URL, id)
	})
	alertdV2 := getBody(ad.URL + "/api/v2/silences")
	require.Contains(t, string(alertdV2), `"id":"config-`, "the configuration's silence is listed")
	stored, err := os.ReadFile(filepath.Join(ad.Dir, "data", "silences.json"))
	require.NoError(t, err)

	// A real Alertmanager, whose clock can't be moved: c is updated in
	// place to end at 245 instead.
	am := alertmanagertest.Start(t, emptyAlertmanager)
	amIDs := create(am.URL, func(id string) {
		code, got := postV2Silence(t, am.URL, id, at(240), at(245), "c, ended before it fires", m("c"))
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, id, got, "updated in place")
	})
	amtool := alertmanagertest.Amtool(t)
	amtoolJSON, err := exec.Command(amtool, "silence", "query", "-o", "json", "--alertmanager.url="+am.URL).Output()
	require.NoError(t, err)

	// Without the silences, b pages and a's chain runs through.
	none, err := Replay(context.Background(), cfg, ReplayOptions{From: from, To: to, Source: src})
	require.NoError(t, err)
	require.Equal(t, []string{"1h0m0s a paged", "2h30m0s b paged", "4h10m0s c paged"}, firingOutcomes(none, start))

	for _, tc := range []struct {
		name string
		file string
		ids  map[string]string
	}{
		{"alertd GET /api/v2/silences", save("alertd-v2.json", alertdV2), alertdIDs},
		{"alertd silences.json", save("silences.json", stored), alertdIDs},
		{"alertd GET /api/v1/silences", save("alertd-v1.json", getBody(ad.URL+"/api/v1/silences")), alertdIDs},
		{"Alertmanager GET /api/v2/silences", save("am-v2.json", getBody(am.URL+"/api/v2/silences")), amIDs},
		{"amtool silence query -o json", save("amtool.json", amtoolJSON), amIDs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(tc.file)
			require.NoError(t, err)
			defer f.Close()
			sils, err := ReadReplaySilences(f, from, to)
			require.NoError(t, err)
			var comments []string
			for _, s := range sils {
				comments = append(comments, s.Comment)
				require.Equal(t, tc.ids[s.Comment], s.ID)
				require.Equal(t, "alice", s.CreatedBy)
			}
			require.Equal(t, []string{"a, while it fires", "d, nothing fires", "b, all its firing", "c, ended before it fires"}, comments)
			require.Equal(t, []string{`model="a"`}, sils[0].Matchers)
			require.Equal(t, at(70), sils[0].StartsAt)
			require.Equal(t, at(90), sils[0].EndsAt)
			require.False(t, sils[3].EndsAt.Before(at(245)))
			require.True(t, sils[3].EndsAt.Before(at(246)), "its final end: %s", sils[3].EndsAt)

			opts := ReplayOptions{From: from, To: to, Source: src, Silences: sils}
			r, err := Replay(context.Background(), cfg, opts)
			require.NoError(t, err)
			require.Equal(t, []string{"1h0m0s a paged", "2h30m0s b suppressed silence", "4h10m0s c paged"}, firingOutcomes(r, start))
			require.Contains(t, r.Firings[1].Reason, "silenced by "+tc.ids["b, all its firing"]+" until "+at(180).Format(time.RFC3339)+", created by alice: b, all its firing")

			// a's chain, as with the same silence in the configuration
			// (TestReplaySuppressionBeginsWhileFiring).
			require.Len(t, r.Incidents, 2)
			var got []string
			for _, d := range r.Incidents[0].History {
				if d.Action == "notified" || d.Action == "suppressed" {
					why, _, _ := strings.Cut(d.Reason, ":")
					got = append(got, fmt.Sprintf("%s %s: %s", d.Time.Sub(start), d.Action, why))
				}
			}
			require.Equal(t, []string{
				`1h0m0s notified: sent to l1 (trigger, level 1)`,
				`1h10m0s suppressed: not sent to l2 (escalate, level 2)`,
				`1h25m0s suppressed: not sent to l1 (repeat, level 1)`,
				`1h35m0s notified: sent to l2 (repeat, level 2)`,
				`2h0m0s notified: sent to l1, l2 (resolve, level 2)`,
			}, got)

			require.Equal(t, 2, r.Summary.SilencesApplied)
			require.Equal(t, 2, r.Summary.SilencesUnmatched)
			require.Len(t, r.Silences, 4)
			require.Equal(t, []string{r.Firings[0].Fingerprint}, r.Silences[0].Alerts)
			require.Equal(t, []string{}, r.Silences[1].Alerts)
			require.Equal(t, []string{r.Firings[1].Fingerprint}, r.Silences[2].Alerts)
			require.Equal(t, []string{}, r.Silences[3].Alerts)
			require.Empty(t, sils[0].Alerts, "the caller's silences are left as they were")

			js, err := json.Marshal(r)
			require.NoError(t, err)
			require.Contains(t, string(js), `"silences_applied":2,"silences_unmatched":2`)
			require.Contains(t, string(js), `{"id":"`+tc.ids["d, nothing fires"]+`","matchers":["model=\"d\""],"starts_at":"`+at(100).Format(time.RFC3339)+`","ends_at":"`+at(110).Format(time.RFC3339)+`","created_by":"alice","comment":"d, nothing fires","alerts":[]}`)
			var text bytes.Buffer
			require.NoError(t, CompareReplays(r, r).WriteText(&text))
			require.Regexp(t, `\nsilences applied +2 +2\nsilences unmatched +2 +2\n`, text.String())
		})
	}
}

// firingOutcomes lists a replay's firings as "<fired after start> <model>
// <outcome> <suppressed by>".
func firingOutcomes(r *ReplayResult, start time.Time) []string {
	var out []string
	for _, f := range r.Firings {
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", f.FiredAt.Sub(start), f.Labels["model"], f.Outcome, f.SuppressedBy)))
	}
	return out
}

// A silences file that is not one names the forms it may take; a silence
// that can't apply is an error naming its id; silences out of the range
// are left out.
func TestReadReplaySilences(t *testing.T) {
	from, to := replayStart, replayStart.Add(time.Hour)
	read := func(s string) ([]ReplaySilence, error) {
		return ReadReplaySilences(strings.NewReader(s), from, to)
	}
	v2 := func(id, matchers, startsAt, endsAt string) string {
		return fmt.Sprintf(`{"id":%q,"matchers":%s,"startsAt":%q,"endsAt":%q,"createdBy":"x","comment":"y","status":{"state":"expired"},"updatedAt":%q}`,
			id, matchers, startsAt, endsAt, startsAt)
	}
	in, out := "2026-03-02T00:10:00Z", "2026-03-02T00:20:00Z"

	for _, tc := range []struct {
		name, file, err string
	}{
		{"empty", "", "neither a list of silences (GET /api/v2/silences, silences.json) nor GET /api/v1/silences's answer: not a JSON list or object"},
		{"YAML", "- id: x\n", "neither a list of silences (GET /api/v2/silences, silences.json) nor GET /api/v1/silences's answer: not a JSON list or object"},
		{"an object", `{"silences": []}`, "nor GET /api/v1/silences's answer: an object without data"},
		{"a list of something else", `[1]`, "silence 1 of the list: json: cannot unmarshal number into Go value of type alertd.replaySilenceJSON"},
		{"a bad time", `[{"id":"s1","startsAt":"today"}]`, `silence s1: parsing time "today"`},
		{"no id", `[` + v2("", `[{"name":"a","value":"b","isRegex":false}]`, in, out) + `]`, "silence 1 of the list has no id"},
		{"twice", `[` + v2("s1", `["a=\"b\""]`, in, out) + `,` + v2("s1", `["a=\"b\""]`, in, out) + `]`, "silence s1 is in the list twice"},
		{"no matchers", `[` + v2("s1", `[]`, in, out) + `]`, "silence s1: a silence needs at least one matcher"},
		{"a bad regular expression", `[` + v2("s1", `[{"name":"a","value":"(","isRegex":true}]`, in, out) + `]`,
			"silence s1: invalid matcher {\"name\":\"a\",\"value\":\"(\",\"isRegex\":true}: error parsing regexp: missing closing ): `^(?:()$`"},
		{"a bad matcher string", `[` + v2("s1", `["a=~\"(\""]`, in, out) + `]`, `silence s1: invalid matcher "a=~\"(\""`},
		{"a matcher without isRegex", `[` + v2("s1", `[{"name":"a","value":"b"}]`, in, out) + `]`, `silence s1: matcher {"name":"a","value":"b"} needs name, value and isRegex`},
		{"a matcher of neither form", `[` + v2("s1", `[1]`, in, out) + `]`, `silence s1: matcher 1 is neither a string nor an object of GET /api/v2/silences`},
		{"matches everything", `[` + v2("s1", `[{"name":"a","value":".*","isRegex":true}]`, in, out) + `]`, "silence s1: matchers must not match the empty label set"},
		{"no end", `[{"id":"s1","matchers":["a=\"b\""],"startsAt":"` + in + `"}]`, "silence s1: a silence needs startsAt and endsAt"},
		{"ends before it starts", `[` + v2("s1", `["a=\"b\""]`, out, in) + `]`, "silence s1: endsAt 2026-03-02T00:10:00Z is before startsAt 2026-03-02T00:20:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := read(tc.file)
			require.ErrorContains(t, err, tc.err)
		})
	}

	// Both forms of matchers, != and !~ too; the configuration's silences
	// (by id in API v2, by source in alertd's API v1) and those out of the
	// range are left out.
	sils, err := read(`{"status":"success","data":[` + strings.Join([]string{
		v2("v2", `[{"name":"a","value":"b","isRegex":false,"isEqual":false},{"name":"c","value":"d.*","isRegex":true,"isEqual":false},{"name":"e","value":"f","isRegex":false}]`, in, out),
		v2("str", `["a!=\"b\"", "{c!~\"d.*\", e=\"f\"}"]`, in, out),
		v2("config-0123", `["a=\"b\""]`, in, out),
		`{"id":"from-config","matchers":["a=\"b\""],"startsAt":"` + in + `","endsAt":"` + out + `","source":"config","state":"active"}`,
		v2("before", `["a=\"b\""]`, "2026-03-01T23:00:00Z", "2026-03-02T00:00:00Z"),
		v2("after", `["a=\"b\""]`, "2026-03-02T01:00:01Z", "2026-03-02T02:00:00Z"),
		v2("at the end", `["a=\"b\""]`, "2026-03-02T01:00:00Z", "2026-03-02T02:00:00Z"),
	}, ",") + `]}`)
	require.NoError(t, err)
	require.Len(t, sils, 3)
	require.Equal(t, []string{"str", "v2", "at the end"}, []string{sils[0].ID, sils[1].ID, sils[2].ID})
	require.Equal(t, []string{`a!="b"`, `{c!~"d.*", e="f"}`}, sils[0].Matchers)
	require.Equal(t, []string{`a!="b"`, `c!~"d.*"`, `e="f"`}, sils[1].Matchers)
	require.Equal(t, sils[0].matchers.String(), sils[1].matchers.String())

	none, err := ReadReplaySilences(io.MultiReader(strings.NewReader(" [] \n")), from, to)
	require.NoError(t, err)
	require.Empty(t, none)
}

// A silence with expireOnResolve ends, in a replay as in alertd, once the
// alert it silenced resolves, so that the alert's next firing pages. alertd
// runs on a clock moved through the history's times, the alert posted as
// its rule fires it; the replay, given the silence as saved when it was
// created (GET /api/v1/silences: its end still the planned one) or at the
// end (silences.json: its end the expiry), has the same outcomes.
func TestReplaySilenceExpireOnResolve(t *testing.T) {
	t.Parallel()
	start := time.Now().UTC().Truncate(time.Minute).Add(2 * time.Minute)
	at := func(m int) time.Time { return start.Add(time.Duration(m) * time.Minute) }
	ts := func(m int) string { return at(m).Format(time.RFC3339Nano) }
	dir := t.TempDir()
	hist := filepath.Join(dir, "tsdb")
	// Model a fails from 60 to 100, then from 150 to 170.
	writeHistoryFrom(t, hist, start, map[string][]float64{
		"errors/a": pattern(300, 0, 5, [2]int{60, 100}, [2]int{150, 170}),
	})
	src, closeSrc, err := OpenReplaySource(hist, "", 0, commoncfgZero)
	require.NoError(t, err)
	defer closeSrc()
	cfg := writeReplayConfig(t, dir, "c", "", replayRules)

	// Live: someone silences model a until 200, "until it resolves".
	clock := &testClock{}
	moveTo := func(m int) { clock.skip(at(m).Sub(clock.Now())) }
	h := newHook(t)
	ad := startAlertd(t, routes(h, nil, ""), map[string]string{"rules.yml": "groups: []\n"}, clock.options())
	moveTo(50)
	id := createSilence(t, ad, fmt.Sprintf(`{"matchers":["model=\"a\""],"startsAt":%q,"endsAt":%q,"createdBy":"alice","comment":"on it","expireOnResolve":true}`, ts(50), ts(200)))
	code, atCreation := get(t, ad.URL+"/api/v1/silences")
	require.Equal(t, http.StatusOK, code)
	silence := func() map[string]any {
		for _, s := range v1Silences(t, ad.URL) {
			if s["id"] == id {
				return s
			}
		}
		return nil
	}
	labels := model.LabelSet{"alertname": "ErrorsHigh", "model": "a"}
	moveTo(60)
	postAlertJSON(t, ad, fmt.Sprintf(`{"labels":{"alertname":"ErrorsHigh","model":"a"},"startsAt":%q,"endsAt":%q}`, ts(60), ts(299)))
	first := waitFor(t, ad, labels, inState("suppressed"), "not silenced")
	require.Contains(t, lastOf(first.History, "silence").Reason, "silenced by "+id)
	// alertd's loop sees the silence select a firing alert.
	require.Eventually(t, func() bool { return silence()["silencedAt"] != nil }, 10*time.Second, 20*time.Millisecond)
	moveTo(100)
	postAlertJSON(t, ad, fmt.Sprintf(`{"labels":{"alertname":"ErrorsHigh","model":"a"},"startsAt":%q,"endsAt":%q}`, ts(60), ts(100)))
	require.Eventually(t, func() bool { return silence()["state"] == "expired" }, 10*time.Second, 20*time.Millisecond, "the silence outlived its alert")
	moveTo(150)
	postAlertJSON(t, ad, fmt.Sprintf(`{"labels":{"alertname":"ErrorsHigh","model":"a"},"startsAt":%q,"endsAt":%q}`, ts(150), ts(299)))
	h.wait(t, "ErrorsHigh", "firing", 30*time.Second)
	require.Equal(t, 1, h.notifications("ErrorsHigh", "firing"), "only the second firing paged")
	stored, err := os.ReadFile(filepath.Join(ad.Dir, "data", "silences.json"))
	require.NoError(t, err)
	live := []string{"1h0m0s a suppressed silence", "2h30m0s a paged"}

	for name, body := range map[string]string{"GET /api/v1/silences at creation": atCreation, "silences.json at the end": string(stored)} {
		t.Run(name, func(t *testing.T) {
			sils, err := ReadReplaySilences(strings.NewReader(body), at(0), at(299))
			require.NoError(t, err)
			require.Len(t, sils, 1)
			require.True(t, sils[0].ExpireOnResolve)
			r, err := Replay(context.Background(), cfg, ReplayOptions{From: at(0), To: at(299), Source: src, Silences: sils})
			require.NoError(t, err)
			require.Equal(t, live, firingOutcomes(r, start), "the replay's outcomes are alertd's")
			require.Equal(t, at(100), r.Silences[0].ExpiredAt, "ended as its alert resolved")
			require.Len(t, r.Silences[0].Alerts, 1)
			js, err := json.Marshal(r.Silences[0])
			require.NoError(t, err)
			require.Contains(t, string(js), `"expire_on_resolve":true,"alerts":["`+r.Firings[0].Fingerprint+`"],"expired_at":"`+ts(100)+`"}`)
		})
	}
}

// v1Silences returns alertd's GET /api/v1/silences, each silence as a map.
func v1Silences(t *testing.T, url string) []map[string]any {
	t.Helper()
	code, body := get(t, url+"/api/v1/silences")
	require.Equal(t, http.StatusOK, code, body)
	var r struct {
		Data []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	return r.Data
}
