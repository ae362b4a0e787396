package alertd

import (
	"cmp"
	"errors"

	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// operatorItem is what operators create to keep alerts from
// notifications until it ends: a silence, a maintenance window, a
// suppression rule. Those from the API are kept in a file under
// --storage.path; those from the configuration file come and go with it.
type operatorItem interface {
	itemID() string
	fromConfig() bool
	// endsAt is when the item stops applying; ok is false when it has no
	// end.
	endsAt() (t time.Time, ok bool)
	// expire makes the item end at now, unless it ends earlier.
	expire(now time.Time)
	// compile parses what the stored form keeps as text (matchers,
	// conditions), after it is read from disk.
	compile() error
}

// errFromConfig is the error of expiring an item of the configuration file.
var errFromConfig = errors.New("read-only")

// itemSet stores operator items of one kind by id. Its stage holds mu
// while it looks at items; the file is written without it (save).
type itemSet[T any, P interface {
	*T
	operatorItem
}] struct {
	mu    sync.Mutex
	what  string // "silence", "maintenance window", …
	file  *stateFile
	items map[string]P
}

// openItemSet reads the items kept in path.
func openItemSet[T any, P interface {
	*T
	operatorItem
}](what, path string) (*itemSet[T, P], error) {
	s := &itemSet[T, P]{what: what, file: newStateFile(path), items: map[string]P{}}
	var stored []P
	if _, err := readJSON(path, &stored); err != nil {
		return nil, fmt.Errorf("couldn't read %ss: %w", what, err)
	}
	for _, it := range stored {
		if err := it.compile(); err != nil {
			return nil, fmt.Errorf("couldn't read %s %s from %s: %w", what, it.itemID(), path, err)
		}
		s.items[it.itemID()] = it
	}
	return s, nil
}

// setConfig replaces the configuration's items, keeping the API's.
func (s *itemSet[T, P]) setConfig(next []P) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, it := range s.items {
		if it.fromConfig() {
			delete(s.items, id)
		}
	}
	for _, it := range next {
		s.items[it.itemID()] = it
	}
}

// add stores a new API item.
func (s *itemSet[T, P]) add(it P) error {
	s.mu.Lock()
	s.items[it.itemID()] = it
	s.mu.Unlock()
	return s.save()
}

// expire ends an item now. It reports whether the item exists; one from
// the configuration file cannot be expired through the API.
func (s *itemSet[T, P]) expire(id string, now time.Time) (bool, error) {
	s.mu.Lock()
	it, ok := s.items[id]
	if !ok {
		s.mu.Unlock()
		return false, nil
	}
	if it.fromConfig() {
		s.mu.Unlock()
		return true, fmt.Errorf("%s comes from the configuration file: remove it there: %w", s.what, errFromConfig)
	}
	it.expire(now)
	s.mu.Unlock()
	return true, s.save()
}

// list returns copies of the items, ordered by byOrder and then by id.
func (s *itemSet[T, P]) list(byOrder func(a, b P) int) []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]P, 0, len(s.items))
	for _, it := range s.items {
		ps = append(ps, it)
	}
	slices.SortFunc(ps, func(a, b P) int {
		return cmp.Or(byOrder(a, b), strings.Compare(a.itemID(), b.itemID()))
	})
	out := make([]T, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

// byEnd orders items by when they end, those without an end last.
func byEnd[P operatorItem](a, b P) int {
	ta, oka := a.endsAt()
	tb, okb := b.endsAt()
	switch {
	case oka && okb:
		return ta.Compare(tb)
	case oka:
		return -1
	case okb:
		return 1
	}
	return 0
}

// gc forgets API items that ended longer than retention ago.
func (s *itemSet[T, P]) gc(now time.Time, retention time.Duration) {
	s.mu.Lock()
	changed := false
	for id, it := range s.items {
		if end, ok := it.endsAt(); ok && !it.fromConfig() && now.Sub(end) > retention {
			delete(s.items, id)
			changed = true
		}
	}
	s.mu.Unlock()
	if changed {
		_ = s.save()
	}
}

// save writes the API items atomically, outside s.mu: the stage reads them
// meanwhile (see stateFile). Called without s.mu held.
func (s *itemSet[T, P]) save() error {
	err := s.file.save(&s.mu, func() any {
		stored := []P{}
		for _, it := range s.items {
			if !it.fromConfig() {
				stored = append(stored, it)
			}
		}
		slices.SortFunc(stored, func(a, b P) int { return strings.Compare(a.itemID(), b.itemID()) })
		return stored
	})
	if err != nil {
		return fmt.Errorf("couldn't save %ss: %w", s.what, err)
	}
	return nil
}

// deleteItem answers a DELETE of an operator item: it expires the item
// with the id in the path and answers {key: id}.
func (a *Alertd) deleteItem(w http.ResponseWriter, r *http.Request, what, key string, expire func(string, time.Time) (bool, error)) {
	id := r.PathValue("id")
	ok, err := expire(id, a.opts.Now())
	switch {
	case !ok:
		http.Error(w, fmt.Sprintf("no %s %q", what, id), http.StatusNotFound)
	case errors.Is(err, errFromConfig):
		http.Error(w, strings.TrimSuffix(err.Error(), ": "+errFromConfig.Error()), http.StatusBadRequest)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		respond(w, map[string]string{key: id})
	}
}
