// Package payloadlog sends the sidecar's captured requests and responses to
// an HTTP endpoint as CloudEvents, as KServe's payload logger does, so that
// the consumers written for it (message dumpers, brokers, TrustyAI, audit
// stores) take them unchanged.
//
// Delivery never holds a model request: events are offered to a queue
// bounded in bytes and sent by workers. A receiver that fails or is down is
// retried with backoff, holding its event, so nothing is lost while the queue
// has room. A batch the receiver refuses is sent again in parts, so that only
// the events it refuses alone are dropped (while it refuses every event,
// events go alone); after a 413, batches are smaller for a while. With a
// spool directory, events that don't fit go to files on disk instead, in
// order, and are sent from there once the receiver keeps up; the queue's
// events are spooled at shutdown too, so a restart loses nothing. An event
// is deleted from the spool only once sent or rejected: delivery is at
// least once (after a crash, the events of a partly sent spool file come
// again, with their ids). Whatever can't be kept is dropped and counted by
// reason.
package payloadlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelmon/modelmon/internal/outbox"
)

// Event types, as KServe's logger names them.
const (
	TypeRequest  = "org.kubeflow.serving.inference.request"
	TypeResponse = "org.kubeflow.serving.inference.response"
)

// Event is one CloudEvent: a request or a response body and its attributes.
type Event struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Source string    `json:"source"`
	Time   time.Time `json:"time"`
	// ContentType is the data's media type (datacontenttype).
	ContentType string `json:"datacontenttype,omitempty"`
	// Extensions are further attributes, sent as Ce-<name> headers; names
	// are lowercase letters and digits, as CloudEvents requires.
	Extensions map[string]string `json:"extensions,omitempty"`
	Data       []byte            `json:"-"`
}

// Defaults of Options.
const (
	DefaultWorkers        = 4
	DefaultTimeout        = 10 * time.Second
	DefaultMaxQueueBytes  = 64 << 20
	DefaultMaxSpoolBytes  = 1 << 30
	DefaultSegmentBytes   = 4 << 20
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultLimitProbeWait = time.Minute
	DefaultMaxProbeWait   = time.Hour
)

// Options configure a Logger.
type Options struct {
	// URL receives the events (HTTP POST, CloudEvents binary mode).
	URL string
	// Workers send events at the same time.
	Workers int
	// BatchSize is the most events one request carries. 1 (the default)
	// sends each event alone in binary mode, as KServe's logger does; more
	// sends what is queued, up to BatchSize, in CloudEvents' batched JSON
	// mode (application/cloudevents-batch+json), for receivers that take it.
	BatchSize int
	// Timeout bounds each delivery attempt.
	Timeout time.Duration
	// MaxQueueBytes bounds the events held in memory (their data).
	MaxQueueBytes int64
	// SpoolDir, when set, holds events that don't fit in the queue, and the
	// queue's events at shutdown.
	SpoolDir string
	// MaxSpoolBytes bounds the spool's files.
	MaxSpoolBytes int64
	// SegmentBytes is the size at which a spool file is closed and a new
	// one begun.
	SegmentBytes int64
	// InitialBackoff and MaxBackoff bound the wait between attempts.
	InitialBackoff, MaxBackoff time.Duration
	// LimitProbeWait is how long the lower batch limit a 413 sets holds
	// before a batch twice as large is tried; each 413 after it doubles the
	// wait, up to MaxProbeWait.
	LimitProbeWait, MaxProbeWait time.Duration
	// Now is the clock of the batch limit's probes; time.Now when nil.
	Now func() time.Time
	// TLSConfig configures the connections to an https URL; nil: Go's
	// defaults, the system's CAs.
	TLSConfig  *tls.Config
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Reasons events are dropped, the values of the reason label.
const (
	DropQueueFull  = "queue_full"
	DropSpoolFull  = "spool_full"
	DropRejected   = "rejected"
	DropShutdown   = "shutdown"
	DropSpoolError = "spool_error"
)

// item is an event held for delivery, and the spool file it came from (nil:
// memory only).
type item struct {
	ev  *Event
	seg *segment
}

func (it item) size() int64 { return int64(len(it.ev.Data)) }

// segment is one spool file.
type segment struct {
	path string
	size int64
	// loaded: its events are in the queue; outstanding of them are not yet
	// sent. The file goes when all are.
	loaded      bool
	outstanding int
}

// Logger delivers events.
type Logger struct {
	o       Options
	url     string
	client  *http.Client
	metrics *metrics
	logger  *slog.Logger

	// limit is the most events a batch takes.
	limit *batchLimit
	// refusing: the receiver refused every event of the last batch it
	// was sent in parts; events go alone until it takes one.
	refusing atomic.Bool
	now      func() time.Time

	mu   sync.Mutex
	cond *sync.Cond
	// queue holds the events to send, oldest first; queueBytes their data.
	queue      []item
	queueBytes int64
	// spool: the files not yet loaded or not yet sent, oldest first; the
	// last may be the one being written (w). spilling: new events go to the
	// spool, behind the ones there, until it has been loaded.
	segments   []*segment
	w          *spoolWriter
	spoolBytes int64
	spilling   bool
	nextSeq    uint64
	closing    bool
	// aborted: Close stopped waiting; the workers stop taking events.
	aborted  bool
	inFlight int

	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   chan struct{}
	closed sync.Once
}

// New opens the spool, if any, and starts the workers.
func New(o Options) (*Logger, error) {
	if o.URL == "" {
		return nil, errors.New("payload log: no URL")
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if o.MaxSpoolBytes <= 0 {
		o.MaxSpoolBytes = DefaultMaxSpoolBytes
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.LimitProbeWait <= 0 {
		o.LimitProbeWait = DefaultLimitProbeWait
	}
	if o.MaxProbeWait <= 0 {
		o.MaxProbeWait = DefaultMaxProbeWait
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Logger{
		o: o, url: o.URL, logger: o.Logger, stop: make(chan struct{}), now: o.Now,
		limit: newBatchLimit(o.BatchSize, o.LimitProbeWait, max(o.LimitProbeWait, o.MaxProbeWait)),
	}
	l.client = &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     o.TLSConfig,
		ForceAttemptHTTP2:   true, // as Go's default transport, a TLS configuration given
		MaxIdleConnsPerHost: o.Workers,
		IdleConnTimeout:     90 * time.Second,
	}}
	l.cond = sync.NewCond(&l.mu)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	if o.SpoolDir != "" {
		if err := l.openSpool(); err != nil {
			return nil, err
		}
	}
	l.metrics = newMetrics(l)
	if err := l.metrics.register(o.Registerer); err != nil {
		return nil, err
	}
	for range o.Workers {
		l.wg.Add(1)
		go l.work()
	}
	if o.SpoolDir != "" {
		l.wg.Add(1)
		go l.flushSpool()
	}
	return l, nil
}

// openSpool finds the files an earlier run left, to send them first.
func (l *Logger) openSpool() error {
	if err := os.MkdirAll(l.o.SpoolDir, 0o750); err != nil {
		return fmt.Errorf("payload log: couldn't create the spool directory: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(l.o.SpoolDir, "*.spool"))
	if err != nil {
		return err
	}
	slices.Sort(files)
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("payload log: %w", err)
		}
		l.segments = append(l.segments, &segment{path: f, size: fi.Size()})
		l.spoolBytes += fi.Size()
		if seq, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(f), ".spool"), 10, 64); err == nil && seq >= l.nextSeq {
			l.nextSeq = seq + 1
		}
	}
	if len(l.segments) > 0 {
		l.spilling = true
		l.logger.Info("Sending the payload events an earlier run spooled", "files", len(l.segments), "bytes", l.spoolBytes)
	}
	return nil
}

// Offer hands an event over for delivery, without waiting: it goes to the
// queue, or to the spool, or is dropped and counted. The Logger keeps ev.
func (l *Logger) Offer(ev *Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	it := item{ev: ev}
	switch {
	case l.closing:
		l.metrics.dropped.WithLabelValues(DropShutdown).Inc()
	case !l.spilling && l.queueBytes+it.size() <= l.o.MaxQueueBytes:
		l.push(it)
	case l.o.SpoolDir == "":
		l.metrics.dropped.WithLabelValues(DropQueueFull).Inc()
	default:
		l.spoolLocked(it)
	}
}

func (l *Logger) push(it item) {
	l.queue = append(l.queue, it)
	l.queueBytes += it.size()
	l.cond.Signal()
}

// spoolLocked writes an event to the spool's current file, or counts why it
// couldn't.
func (l *Logger) spoolLocked(it item) {
	rec, err := encode(it.ev)
	if err != nil {
		l.metrics.dropped.WithLabelValues(DropSpoolError).Inc()
		l.logger.Error("Couldn't spool a payload event", "err", err)
		return
	}
	if l.spoolBytes+int64(len(rec)) > l.o.MaxSpoolBytes {
		l.metrics.dropped.WithLabelValues(DropSpoolFull).Inc()
		return
	}
	if l.w == nil || l.w.seg.size >= l.o.SegmentBytes {
		if err := l.rotateLocked(); err != nil {
			l.metrics.dropped.WithLabelValues(DropSpoolError).Inc()
			l.logger.Error("Couldn't spool a payload event", "err", err)
			return
		}
	}
	if _, err := l.w.buf.Write(rec); err != nil {
		l.metrics.dropped.WithLabelValues(DropSpoolError).Inc()
		l.logger.Error("Couldn't spool a payload event", "err", err)
		return
	}
	l.w.seg.size += int64(len(rec))
	l.spoolBytes += int64(len(rec))
	l.spilling = true
	l.metrics.spooled.Inc()
	// A worker waiting on an empty queue loads the spool: nothing else
	// would wake it while events only go to disk.
	l.cond.Signal()
}

// spoolWriter is the spool file being written.
type spoolWriter struct {
	f   *os.File
	buf *bufio.Writer
	seg *segment
}

// rotateLocked closes the file being written, if any, and begins a new one.
func (l *Logger) rotateLocked() error {
	if err := l.closeWriterLocked(); err != nil {
		return err
	}
	seg := &segment{path: filepath.Join(l.o.SpoolDir, fmt.Sprintf("%020d.spool", l.nextSeq))}
	f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	l.nextSeq++
	l.w = &spoolWriter{f: f, buf: bufio.NewWriterSize(f, 64<<10), seg: seg}
	l.segments = append(l.segments, seg)
	return nil
}

// closeWriterLocked writes out and closes the spool file being written.
func (l *Logger) closeWriterLocked() error {
	w := l.w
	if w == nil {
		return nil
	}
	l.w = nil
	err := w.buf.Flush()
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if w.seg.size == 0 {
		l.removeLocked(w.seg)
	}
	return err
}

// flushSpool writes out the spool's buffer every second, so that a crash
// loses at most the last second of spooled events.
func (l *Logger) flushSpool() {
	defer l.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.w != nil {
				if err := l.w.buf.Flush(); err != nil {
					l.logger.Error("Couldn't write the payload spool", "err", err)
				}
			}
			l.mu.Unlock()
		}
	}
}

// next waits for events to send, up to max of them, oldest first. ok is
// false when the Logger closes and the queue is empty.
func (l *Logger) next(max int, batch []item) ([]item, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.aborted {
			return batch, false
		}
		if len(l.queue) == 0 && l.spilling && !l.closing {
			l.loadLocked()
		}
		if len(l.queue) > 0 {
			n := min(max, len(l.queue))
			for i := range n {
				it := l.queue[i]
				l.queue[i] = item{}
				l.queueBytes -= it.size()
				batch = append(batch, it)
			}
			l.queue = l.queue[n:]
			l.inFlight += n
			return batch, true
		}
		if l.closing {
			return batch, false
		}
		l.cond.Wait()
	}
}

// loadLocked reads the oldest spool file not yet loaded into the queue
// (closing the one being written, if it is that one), and ends spilling
// once none is left.
func (l *Logger) loadLocked() {
	for _, seg := range l.segments {
		if seg.loaded {
			continue
		}
		if l.w != nil && l.w.seg == seg {
			if err := l.closeWriterLocked(); err != nil {
				l.logger.Error("Couldn't write the payload spool", "err", err)
			}
			if seg.size == 0 {
				break
			}
		}
		evs, err := readSegment(seg.path)
		if err != nil {
			l.metrics.dropped.WithLabelValues(DropSpoolError).Inc()
			l.logger.Error("Payload spool file damaged: sending the events before the damage", "file", seg.path, "events", len(evs), "err", err)
		}
		seg.loaded, seg.outstanding = true, len(evs)
		for _, ev := range evs {
			l.push(item{ev: ev, seg: seg})
		}
		if len(evs) == 0 {
			l.removeLocked(seg)
		}
		// With the last file in the queue, new events go to memory again,
		// behind its events: spilling on would give each new event a file
		// of its own (written, synced, read back) for as long as traffic
		// came between two loads.
		if !slices.ContainsFunc(l.segments, func(s *segment) bool { return !s.loaded }) {
			l.spilling = false
		}
		l.cond.Broadcast()
		return
	}
	l.spilling = false
}

// release ends a worker's hold on a batch. Its first n events are settled
// (delivered, or rejected and dropped): a spool file goes once all of its
// events are. The rest go back at the head of the queue, in their order
// (Close cut their delivery short).
func (l *Logger) release(batch []item, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight -= len(batch)
	for _, it := range batch[:n] {
		if it.seg != nil {
			it.seg.outstanding--
			if it.seg.outstanding == 0 {
				l.removeLocked(it.seg)
			}
		}
	}
	rest := batch[n:]
	l.queue = slices.Insert(l.queue, 0, rest...)
	for _, it := range rest {
		l.queueBytes += it.size()
	}
	l.cond.Broadcast()
}

func (l *Logger) removeLocked(seg *segment) {
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.logger.Error("Couldn't remove a sent payload spool file", "file", seg.path, "err", err)
	}
	l.spoolBytes -= seg.size
	if i := slices.Index(l.segments, seg); i >= 0 {
		l.segments = slices.Delete(l.segments, i, i+1)
	}
}

// work sends events until the Logger closes.
func (l *Logger) work() {
	defer l.wg.Done()
	var batch []item
	for {
		var ok bool
		size, probe := l.limit.take(l.now())
		batch, ok = l.next(size, batch[:0])
		if !ok {
			if probe > 0 {
				l.limit.probed(l.now(), probe, 0, false)
			}
			return
		}
		o := l.deliverBatch(batch, probe)
		l.release(batch, o.settled)
		clear(batch)
	}
}

// outcome is what delivering events came to.
type outcome struct {
	// settled events, from the first, are delivered or rejected: all but
	// when Close gives up waiting. rejected of them were refused alone.
	settled, rejected int
	// whole: they went in one request.
	whole bool
	// tooLarge: one of them was refused alone as too large (413), which
	// explains a 413 to a batch holding it.
	tooLarge bool
}

func (o *outcome) add(p outcome) {
	o.settled += p.settled
	o.rejected += p.rejected
	o.tooLarge = o.tooLarge || p.tooLarge
}

// deliverBatch delivers a batch a worker took; probe is the batch limit
// when the batch is its probe (0 when not).
func (l *Logger) deliverBatch(batch []item, probe int) outcome {
	var o outcome
	if l.refusing.Load() {
		o = l.deliverAlone(batch)
	} else {
		o = l.deliver(batch, true, probe > 0)
	}
	if probe > 0 && l.limit.probed(l.now(), probe, len(batch), o.whole) {
		l.logger.Info("The payload log's receiver took a larger batch: raising the limit", "max_events", len(batch))
	}
	switch {
	case o.settled > o.rejected:
		l.setRefusing(false)
	case len(batch) > 1 && o.rejected == len(batch):
		// Every event refused alone (a wrong URL or credentials, a schema
		// the receiver rejects): the next batches are sent event by event.
		l.setRefusing(true)
	}
	return o
}

// setRefusing enters or leaves the state in which events are sent alone,
// logging the change once.
func (l *Logger) setRefusing(on bool) {
	if !l.refusing.CompareAndSwap(!on, on) {
		return
	}
	if on {
		l.logger.Warn("The payload log's receiver refused every event of a batch: sending events alone, dropping those it refuses, until it takes one")
		return
	}
	l.logger.Info("The payload log's receiver took an event again: sending batches whole")
}

// deliverAlone sends a batch's events one by one while the receiver
// refuses every event. Dropping an event takes its refusal alone, so this
// is the fewest requests that drop only what the receiver refuses: one an
// event, not the 2n-1 of a batch of n split in halves down to single
// events. Once it takes one, the rest go together, split if refused; so do
// they once another worker found the receiver taking events again.
func (l *Logger) deliverAlone(batch []item) outcome {
	if len(batch) > 1 {
		l.metrics.splits.Inc()
	}
	var o outcome
	i := 0
	for i < len(batch) && l.refusing.Load() {
		err := l.attempt(batch[i : i+1])
		if err != nil && !outbox.IsPermanent(err) {
			return o // Close gave up waiting
		}
		i++
		o.settled++
		if err == nil {
			l.setRefusing(false)
			break
		}
		l.metrics.dropped.WithLabelValues(DropRejected).Inc()
		l.logger.Debug("The payload log's receiver rejected an event: dropped", "id", batch[i-1].ev.ID, "type", batch[i-1].ev.Type, "err", err)
		o.rejected++
	}
	if rest := batch[i:]; len(rest) > 0 {
		o.add(l.deliver(rest, true, false))
	}
	return o
}

// deliver sends events until each is delivered or rejected. A batch the
// receiver refuses whole is sent again in halves, each split again if
// refused in turn, down to single events: only the events it refuses alone
// are dropped, and with one worker the others still arrive in order. top is
// false for the halves; probe is true for a batch probing the batch limit.
//
// A 413 to a batch lowers the batch limit once its parts are settled, and
// only if none of its events was refused alone as too large: a batch of
// small events refused for one huge event among them says nothing of how
// many events the receiver takes, and its parts, sent whole down to that
// event, showed what it does take.
func (l *Logger) deliver(batch []item, top, probe bool) outcome {
	err := l.attempt(batch)
	switch {
	case err == nil:
		return outcome{settled: len(batch), whole: true}
	case !outbox.IsPermanent(err):
		return outcome{}
	case len(batch) == 1:
		l.metrics.dropped.WithLabelValues(DropRejected).Inc()
		l.logger.Warn("The payload log's receiver rejected events: dropped", "events", 1, "id", batch[0].ev.ID, "type", batch[0].ev.Type, "err", err)
		return outcome{settled: 1, rejected: 1, tooLarge: isTooLarge(err)}
	}
	l.metrics.splits.Inc()
	if top {
		l.logger.Warn("The payload log's receiver rejected a batch: sending it in parts, to drop only the events it refuses", "events", len(batch), "id", batch[0].ev.ID, "err", err)
	} else {
		l.logger.Debug("Splitting a rejected batch of payload events", "events", len(batch), "id", batch[0].ev.ID, "err", err)
	}
	var o outcome
	mid := len(batch) / 2
	for _, part := range [][]item{batch[:mid], batch[mid:]} {
		p := l.deliver(part, false, false)
		o.add(p)
		if p.settled < len(part) {
			return o
		}
	}
	if isTooLarge(err) && !o.tooLarge {
		if lim := l.limit.tooLarge(l.now(), len(batch), probe); lim > 0 {
			l.logger.Warn("The payload log's receiver refused a batch as too large: sending smaller ones for a while", "max_events", lim)
		} else if probe {
			l.logger.Debug("The payload log's receiver refused a larger batch as too large: keeping the limit", "events", len(batch))
		}
	}
	if top {
		log := l.logger.Info
		if o.rejected > 0 {
			log = l.logger.Warn
		}
		log("Sent a rejected batch of payload events in parts", "events", len(batch), "sent", o.settled-o.rejected, "rejected", o.rejected)
	}
	return o
}

// isTooLarge reports whether err is the receiver's 413.
func isTooLarge(err error) bool {
	se := (*outbox.StatusError)(nil)
	return errors.As(err, &se) && se.Code == http.StatusRequestEntityTooLarge
}

// attempt sends events until the receiver accepts them (nil) or refuses
// them (an error outbox.IsPermanent), retrying other failures with backoff,
// or until the Logger gives up waiting at Close (its context's error).
func (l *Logger) attempt(batch []item) error {
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := l.send(batch)
		l.metrics.duration.Observe(time.Since(start).Seconds())
		if err == nil {
			for _, it := range batch {
				l.metrics.sent.WithLabelValues(typeLabel(it.ev.Type)).Inc()
			}
			return nil
		}
		if cerr := l.ctx.Err(); cerr != nil {
			return cerr
		}
		l.metrics.failures.WithLabelValues(outbox.Reason(err)).Inc()
		if outbox.IsPermanent(err) {
			return err
		}
		wait := outbox.Backoff(attempt+1, l.o.InitialBackoff, l.o.MaxBackoff, rand.Float64())
		l.logger.Debug("Couldn't send payload events: retrying", "events", len(batch), "id", batch[0].ev.ID, "attempt", attempt+1, "wait", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-l.ctx.Done():
			return l.ctx.Err()
		}
	}
}

// send makes one delivery attempt: an event alone in binary mode, with
// BatchSize 1, else the events in batched mode.
func (l *Logger) send(batch []item) error {
	ctx, cancel := context.WithTimeout(l.ctx, l.o.Timeout)
	defer cancel()
	var (
		req *http.Request
		err error
	)
	if l.o.BatchSize == 1 {
		req, err = binaryRequest(ctx, l.url, batch[0].ev)
	} else {
		req, err = batchRequest(ctx, l.url, batch)
	}
	if err != nil {
		return outbox.Permanent(err)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	serr := &outbox.StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode >= 500:
		return serr
	}
	return outbox.Permanent(serr)
}

// binaryRequest is an event in CloudEvents' HTTP binary mode: the data as
// the body, the attributes in Ce- headers.
func binaryRequest(ctx context.Context, url string, ev *Event) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ev.Data))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h["Ce-Specversion"] = []string{"1.0"}
	h["Ce-Id"] = []string{ev.ID}
	h["Ce-Type"] = []string{ev.Type}
	h["Ce-Source"] = []string{ev.Source}
	h["Ce-Time"] = []string{ev.Time.UTC().Format(time.RFC3339Nano)}
	for k, v := range ev.Extensions {
		h["Ce-"+strings.ToUpper(k[:1])+k[1:]] = []string{v}
	}
	if ev.ContentType != "" {
		h.Set("Content-Type", ev.ContentType)
	}
	return req, nil
}

// batchRequest is events in CloudEvents' HTTP batched mode: a JSON array of
// events in the JSON format, each with its data as JSON ("data") when it is
// JSON, else as base64 ("data_base64").
func batchRequest(ctx context.Context, url string, batch []item) (*http.Request, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, it := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeStructured(&b, it.ev); err != nil {
			return nil, err
		}
	}
	b.WriteByte(']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &b)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", BatchContentType)
	return req, nil
}

// BatchContentType is the media type of CloudEvents' batched JSON mode.
const BatchContentType = "application/cloudevents-batch+json"

// writeStructured writes an event in the CloudEvents JSON format.
func writeStructured(b *bytes.Buffer, ev *Event) error {
	attrs := make(map[string]any, 6+len(ev.Extensions)+1)
	for k, v := range ev.Extensions {
		attrs[k] = v
	}
	attrs["specversion"] = "1.0"
	attrs["id"] = ev.ID
	attrs["type"] = ev.Type
	attrs["source"] = ev.Source
	attrs["time"] = ev.Time.UTC().Format(time.RFC3339Nano)
	if ev.ContentType != "" {
		attrs["datacontenttype"] = ev.ContentType
	}
	if isJSON(ev.ContentType) && json.Valid(ev.Data) {
		attrs["data"] = json.RawMessage(ev.Data)
	} else {
		attrs["data_base64"] = ev.Data // encoding/json writes []byte as base64
	}
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(attrs); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// isJSON reports whether a media type is JSON's, as CloudEvents reads it.
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(strings.ToLower(mt))
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// Close stops taking events and sends what is queued until ctx is done;
// then it spools what is left (or drops and counts it, without a spool).
// Later calls do nothing.
func (l *Logger) Close(ctx context.Context) error {
	var err error
	l.closed.Do(func() { err = l.close(ctx) })
	return err
}

func (l *Logger) close(ctx context.Context) error {
	l.mu.Lock()
	l.closing = true
	l.cond.Broadcast()
	l.mu.Unlock()
	done := make(chan struct{})
	go func() {
		l.mu.Lock()
		for (len(l.queue) > 0 || l.inFlight > 0) && !l.aborted {
			l.cond.Wait()
		}
		l.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	l.mu.Lock()
	l.aborted = true
	l.cond.Broadcast()
	l.mu.Unlock()
	l.cancel() // cuts short the deliveries in flight, which requeue
	close(l.stop)
	l.wg.Wait()
	<-done

	l.mu.Lock()
	defer l.mu.Unlock()
	var left int
	for _, it := range l.queue {
		if it.seg != nil {
			continue // still in its spool file
		}
		if l.o.SpoolDir == "" {
			left++
			continue
		}
		l.spoolLocked(it)
	}
	l.queue, l.queueBytes = nil, 0
	if left > 0 {
		l.metrics.dropped.WithLabelValues(DropShutdown).Add(float64(left))
		l.logger.Warn("Payload events not sent at shutdown were dropped (set --payload-log.spool-dir to keep them)", "events", left)
	}
	return l.closeWriterLocked()
}

// typeLabel is the type label of an event type.
func typeLabel(t string) string {
	switch t {
	case TypeRequest:
		return "request"
	case TypeResponse:
		return "response"
	}
	return "other"
}

// A spool record is the event's attributes as JSON and its data, each
// preceded by its length (uvarint).
func encode(ev *Event) ([]byte, error) {
	attrs, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	rec := make([]byte, 0, len(attrs)+len(ev.Data)+2*binary.MaxVarintLen64)
	rec = binary.AppendUvarint(rec, uint64(len(attrs)))
	rec = append(rec, attrs...)
	rec = binary.AppendUvarint(rec, uint64(len(ev.Data)))
	return append(rec, ev.Data...), nil
}

// readSegment reads a spool file's events. After an error (a file cut short
// by a crash), it returns the events before it.
func readSegment(path string) ([]*Event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var evs []*Event
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return evs, fmt.Errorf("record %d cut short", len(evs))
		}
		ev := &Event{}
		if err := json.Unmarshal(b[k:k+int(n)], ev); err != nil {
			return evs, fmt.Errorf("record %d: %w", len(evs), err)
		}
		b = b[k+int(n):]
		n, k = binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return evs, fmt.Errorf("record %d cut short", len(evs))
		}
		ev.Data = b[k : k+int(n) : k+int(n)]
		b = b[k+int(n):]
		evs = append(evs, ev)
	}
	return evs, nil
}
