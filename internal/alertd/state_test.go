package alertd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/modelmon/modelmon/escalate"
	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/statefile"
	"github.com/modelmon/modelmon/internal/statefile/statefiletest"
)

// alertd's state files (silences, maintenance windows, suppression rules,
// flap and classifier state, escalations, actions, pushed alerts, model
// versions: all written by statefile.WriteFile, through stateFile or
// writeJSON) are replaced whole or not at all. A
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

// blockWrites makes the writes of f wait until release is called (or the
// test ends); started receives the path of each write as it begins.
func blockWrites(t *testing.T, f *stateFile) (started <-chan string, release func()) {
	t.Helper()
	begun := make(chan string, 16)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write = func(path string, write func(io.Writer) error) error {
		begun <- path
		<-gate
		return statefile.WriteFile(path, write)
	}
	return begun, release
}

// check reports an error of an update run in a goroutine of the test.
func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}

// within fails the test unless fn returns within a few seconds: a write
// blocked in a test (a state file's, the outbox's) must not hold it up.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s waited for a write to the disk", what)
	}
}

// While a store's state file is being written (on a slow disk: here, a
// write that waits until released), the stage that reads the state goes
// on, and so do updates of the state in memory; the write of a later
// update waits for the first, and the file ends with the latest state,
// never overwritten by an earlier snapshot. Each case opens a store in
// dir and returns: change(i), the i-th update, which writes the file;
// read, what the pipeline (or the escalation loop) does with the store's
// lock; and has(i), whether the file holds the i-th update.
func TestStateWritesOutsideTheStageLock(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ctx := context.Background()
	alert := func(i int) *Alert {
		return firingAlert(model.LabelSet{"alertname": "A", "model": model.LabelValue(fmt.Sprintf("m%d", i))}, now.Add(-time.Hour))
	}
	contains := func(t *testing.T, path, s string) bool {
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		require.NoError(t, err)
		return strings.Contains(string(b), s)
	}
	// fpKey is how an alert's fingerprint keys a map in JSON.
	fpKey := func(i int) string { return fmt.Sprintf(`"%d"`, uint64(alert(i).Fingerprint)) }
	type store struct {
		file   *stateFile
		change func(i int)
		read   func()
		has    func(i int) bool
		// later is set for a store saved at every pass of a loop: an
		// update made while a write is in progress is written by the
		// next pass (next), not waited for.
		later bool
		next  func()
	}
	for _, tc := range []struct {
		name string
		open func(t *testing.T, dir string) store
	}{
		{"silences", func(t *testing.T, dir string) store {
			s, err := newSilencer(silencesPath(dir))
			require.NoError(t, err)
			return store{
				file: s.file,
				change: func(i int) {
					m := fmt.Sprintf(`model="m%d"`, i)
					ms, err := parseSilenceMatchers([]string{m})
					if err == nil {
						err = s.set(&silence{Matchers: []string{m}, StartsAt: now, EndsAt: now.Add(time.Hour), Comment: fmt.Sprint(i), matchers: ms}, nil, now)
					}
					check(t, err)
				},
				read: func() { s.Process(ctx, now, alert(1)) },
				has:  func(i int) bool { return contains(t, silencesPath(dir), fmt.Sprintf(`"comment":"%d"`, i)) },
			}
		}},
		{"classifier", func(t *testing.T, dir string) store {
			cl, err := newClassifier(nil, classifierPath(dir), prometheus.NewRegistry())
			require.NoError(t, err)
			return store{
				file:   cl.file,
				change: func(i int) { check(t, cl.observe(alert(i), now, verdictFalsePositive)) },
				read:   func() { cl.Process(ctx, now, alert(1)) },
				has:    func(i int) bool { return contains(t, classifierPath(dir), fpKey(i)) },
			}
		}},
		{"flap", func(t *testing.T, dir string) store {
			f, err := newFlapStage(flapPath(dir), promslog.NewNopLogger())
			require.NoError(t, err)
			f.set(alertconfig.Flapping{Window: model.Duration(time.Hour), StartChanges: 10, StopChanges: 1})
			return store{
				file: f.file,
				change: func(i int) {
					// As the store does: the stage marks the state
					// changed, the store saves it once its lock is free.
					a := alert(i)
					f.Process(ctx, now, a)
					a.EndsAt = now
					f.Process(ctx, now, a)
					f.save()
				},
				read: func() {
					f.Process(ctx, now, alert(3))
					f.count(alert(1).Fingerprint)
				},
				has:   func(i int) bool { return contains(t, flapPath(dir), fpKey(i)) },
				later: true,
				next:  f.save,
			}
		}},
		{"escalation", func(t *testing.T, dir string) store {
			x, err := newEscalator(dir, prometheus.NewRegistry(), promslog.NewNopLogger(), time.Now)
			require.NoError(t, err)
			// Every pass may write: what is tested here is where the
			// write happens, not how often (TestEscalationBatchWritesStateOnce).
			x.saveInterval = 0
			path := filepath.Join(dir, "escalation.json")
			return store{
				file: x.file,
				change: func(i int) {
					// Incidents 1 to i are open.
					var open []*incident
					for j := 1; j <= i; j++ {
						open = append(open, &incident{ID: fmt.Sprintf("incident-%d", j), Firing: []string{"f"}})
					}
					x.sync(now, open, func(*incident) escalate.Subject { return escalate.Subject{} })
				},
				read: func() {
					x.tick(now)
					x.view("incident-1", now)
				},
				has:   func(i int) bool { return contains(t, path, fmt.Sprintf(`"incident-%d"`, i)) },
				later: true,
				next:  func() { x.tick(now) },
			}
		}},
		{"actions", func(t *testing.T, dir string) store {
			r, err := newActionRunner(dir, prometheus.NewRegistry(), promslog.NewNopLogger(), time.Now)
			require.NoError(t, err)
			r.set([]*alertconfig.Action{{Name: "retrain", Approval: alertconfig.ActionApproval{Required: true}}})
			path := filepath.Join(dir, "actions.json")
			return store{
				file: r.file,
				change: func(i int) {
					// As triggerAction does: trigger, record, save.
					_, _, _, _, err := r.trigger(now, "retrain", triggerAlert, map[string]string{"model": fmt.Sprintf("m%d", i)}, nil, fmt.Sprintf("key-%d", i))
					check(t, err)
					r.save(now)
				},
				read: func() { r.configs() },
				has:  func(i int) bool { return contains(t, path, fmt.Sprintf(`"key-%d"`, i)) },
			}
		}},
		{"model versions", func(t *testing.T, dir string) store {
			d, err := newDeployments(dir, prometheus.NewRegistry(), promslog.NewNopLogger())
			require.NoError(t, err)
			d.set(alertconfig.DeploySuppression{Hold: model.Duration(time.Hour), ModelLabel: "model"}, false)
			path := filepath.Join(dir, "model_versions.json")
			return store{
				file: d.versionsFile,
				change: func(i int) {
					// Models m1 to mi, each seen for the first time.
					var vec promql.Vector
					for j := 1; j <= i; j++ {
						vec = append(vec, promql.Sample{Metric: labels.FromStrings("model", fmt.Sprintf("m%d", j), "version", "v1")})
					}
					_, err := d.observe(now, vec)
					check(t, err)
				},
				read: func() { d.Process(ctx, now, alert(1)) },
				has:  func(i int) bool { return contains(t, path, fmt.Sprintf(`"m%d"`, i)) },
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.open(t, t.TempDir())
			started, release := blockWrites(t, s.file)
			var wg sync.WaitGroup
			// On a failure, the updates end before the directory goes.
			t.Cleanup(func() {
				release()
				wg.Wait()
			})
			wg.Go(func() { s.change(1) })
			<-started
			within(t, "the stage", s.read)
			// The second update changes the state in memory at once; its
			// write waits for the first.
			second := make(chan struct{})
			wg.Go(func() {
				defer close(second)
				s.change(2)
			})
			within(t, "the stage, with a second update waiting to write,", s.read)
			if s.later {
				within(t, "the loop's second update", func() { <-second })
			} else {
				select {
				case <-second:
					t.Fatal("the second write did not wait for the first")
				default:
				}
			}
			require.False(t, s.has(1), "the first write is still blocked")
			release()
			wg.Wait()
			if s.later {
				s.next()
			}
			require.True(t, s.has(1), "the first update is lost")
			require.True(t, s.has(2), "the file does not end with the latest state")
		})
	}
}
