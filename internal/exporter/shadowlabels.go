package exporter

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/internal/quality"
)

// shadowPending keeps the shadow's predictions of the requests it compared,
// by prediction id, until the label joins the model's prediction of the
// same id: then both answers are scored against it, on the same inputs. It
// is bounded by --shadow.max-pending, oldest dropped first, and by
// --labels.ttl, as the model's pending predictions are.
type shadowPending struct {
	mu   sync.Mutex
	byID map[string]shadowPair
	// order holds the ids in the order they came, from head on; an id
	// joined, dropped or added again meanwhile is skipped when its turn
	// comes (its seq is not the one in byID).
	order []pendingID
	head  int
	seq   uint64
	max   int
	ttl   time.Duration
	// path is the snapshot file under --storage.path, or "".
	path string
}

// shadowPair is the shadow's prediction for one id.
type shadowPair struct {
	model string
	pred  shadowPrediction
	ts    int64
	seq   uint64
}

type pendingID struct {
	id  string
	seq uint64
}

func newShadowPending(max int, ttl time.Duration) *shadowPending {
	return &shadowPending{byID: map[string]shadowPair{}, max: max, ttl: ttl}
}

// add keeps the shadow's predictions of one request: instance i of a batch
// of n > 1 has the id "<id>/<i>", as the label join names them.
func (sp *shadowPending) add(now time.Time, model string, id []byte, preds []shadowPrediction) {
	ts := now.UnixNano()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for i, p := range preds {
		if !p.isClass && !p.isX {
			continue
		}
		key := string(id)
		if len(preds) > 1 {
			key += "/" + strconv.Itoa(i)
		}
		sp.put(key, shadowPair{model: model, pred: p, ts: ts})
	}
	sp.trim(ts)
}

// put keeps p for id, in place of what id had. The caller holds mu.
func (sp *shadowPending) put(id string, p shadowPair) {
	sp.seq++
	p.seq = sp.seq
	sp.byID[id] = p
	sp.order = append(sp.order, pendingID{id, p.seq})
}

// live returns the prediction o stands for, unless it was joined, dropped
// or added again since. The caller holds mu.
func (sp *shadowPending) live(o pendingID) (shadowPair, bool) {
	p, ok := sp.byID[o.id]
	return p, ok && p.seq == o.seq
}

// trim drops what is past the TTL, then the oldest beyond max. The caller
// holds mu.
func (sp *shadowPending) trim(now int64) {
	cutoff := now - int64(sp.ttl)
	for sp.head < len(sp.order) {
		o := sp.order[sp.head]
		p, live := sp.live(o)
		if live && p.ts > cutoff && len(sp.byID) <= sp.max {
			break
		}
		if live {
			delete(sp.byID, o.id)
		}
		sp.order[sp.head] = pendingID{}
		sp.head++
	}
	if sp.head > len(sp.order)/2 && sp.head > 1024 {
		sp.order = append(sp.order[:0], sp.order[sp.head:]...)
		sp.head = 0
	}
}

// take returns and forgets the shadow's prediction for a model's id.
func (sp *shadowPending) take(model, id string) (shadowPrediction, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	p, ok := sp.byID[id]
	if !ok || p.model != model {
		return shadowPrediction{}, false
	}
	delete(sp.byID, id)
	return p.pred, true
}

// len is the number of predictions waiting for their label.
func (sp *shadowPending) len() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.byID)
}

// labelled scores the shadow's prediction of a label the label join has
// just joined to the model's, when the shadow answered that request: a
// class right or wrong on each side, and the pairs only one got right; or
// the errors of numbers on each side.
func (s *shadow) labelled(o quality.Outcome) {
	p, ok := s.pending.take(o.Model, o.ID)
	if !ok {
		return
	}
	m := s.metrics
	if o.Regression {
		if !p.isX || p.x-p.x != 0 {
			return
		}
		m.LabelsMatched.WithLabelValues(o.Model).Inc()
		m.RegOutcomes.WithLabelValues(o.Model).Inc()
		d := p.x - o.ActualValue
		m.AbsoluteError.WithLabelValues(o.Model, collector.SourceModel).Add(o.AbsError)
		m.AbsoluteError.WithLabelValues(o.Model, collector.SourceShadow).Add(math.Abs(d))
		m.SquaredError.WithLabelValues(o.Model, collector.SourceModel).Add(o.SquaredError)
		m.SquaredError.WithLabelValues(o.Model, collector.SourceShadow).Add(d * d)
		return
	}
	m.LabelsMatched.WithLabelValues(o.Model).Inc()
	// Created at 0 with LabelsMatched, as the label join's own count of
	// numeric pairs is (labels.record).
	m.RegOutcomes.WithLabelValues(o.Model)
	modelRight := o.Correct && !o.ActualOverflow
	shadowRight := p.isClass && p.class == o.ActualClass
	// Created at 0 on a miss too: the gain subtracts one from the other.
	model, shadow := m.Correct.WithLabelValues(o.Model, collector.SourceModel), m.Correct.WithLabelValues(o.Model, collector.SourceShadow)
	discordant := m.Discordant.WithLabelValues(o.Model)
	if modelRight {
		model.Inc()
	}
	if shadowRight {
		shadow.Inc()
	}
	if modelRight != shadowRight {
		discordant.Inc()
	}
}
