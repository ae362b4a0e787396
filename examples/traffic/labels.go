package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// labelBatch is the most labels one POST /v1/labels carries.
const labelBatch = 1000

// truth is the ground truth of one instance of a request: its class, 1
// (fraud) or 0, drawn with the fraud model's own probability, so that the
// model is calibrated and its accuracy is what its scores say.
type truth struct {
	instance int
	class    int64
}

// labeller posts the ground truth of answered predictions to the sidecar's
// POST /v1/labels, delay after their answer, as a label source (a review
// queue, chargebacks) would. Labels still waiting when the run ends are
// not posted.
type labeller struct {
	target string // the sidecar's web listener
	delay  time.Duration
	client *http.Client
	st     *stats

	mu  sync.Mutex
	due []dueLabel // in the order their predictions were answered
}

type dueLabel struct {
	at    time.Time
	id    string
	class int64
}

// answered schedules the labels of r, answered at now. Instance i of a
// request of several is "<id>/<i>", as the sidecar names it.
func (l *labeller) answered(now time.Time, r request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range r.truth {
		id := r.id
		if r.instances > 1 {
			id += "/" + strconv.Itoa(t.instance)
		}
		l.due = append(l.due, dueLabel{at: now.Add(l.delay), id: id, class: t.class})
	}
}

// run posts the labels that are due every interval until ctx is done.
func (l *labeller) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			// A batch under way when the run ends is finished (within the
			// client's timeout), so that the sidecar and the counts agree.
			l.post(context.WithoutCancel(ctx), now)
		}
	}
}

// post sends the labels due at now, in batches, and counts them.
func (l *labeller) post(ctx context.Context, now time.Time) {
	l.mu.Lock()
	n := 0
	for n < len(l.due) && !l.due[n].at.After(now) {
		n++
	}
	due := l.due[:n:n]
	l.due = l.due[n:]
	l.mu.Unlock()
	for len(due) > 0 {
		batch := due[:min(len(due), labelBatch)]
		due = due[len(batch):]
		err := l.send(ctx, batch)
		l.st.update(func(c *counts) {
			if err != nil {
				c.LabelErrors += len(batch)
			} else {
				c.Labels += len(batch)
			}
		})
	}
}

// send posts one batch as NDJSON. The sidecar answers 200 when it took
// the batch; what became of each label (matched, held, …) is its to count.
func (l *labeller) send(ctx context.Context, batch []dueLabel) error {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, d := range batch {
		// The label is the class's index, 1 for fraud: the sidecar reads
		// it as models[].classes[1].
		if err := enc.Encode(map[string]any{"id": d.id, "label": d.class}); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.target+"/v1/labels", &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("labels answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
