package exporter

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	promModel "github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/collector"
	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/driftref"
	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/predclass"
	"github.com/modelmon/modelmon/internal/statefile"
)

// PredictionColumn names the model's output among a profile's features, when
// the sidecar learns the reference itself.
const PredictionColumn = "__prediction__"

// DriftOptions configure drift detection in the sidecar.
type DriftOptions struct {
	// Reference is the reference of every model: a profile (.json), or
	// training data (.csv, .jsonl, .parquet) profiled at start-up. Empty: none.
	Reference string
	// PredictionColumn names the column of Reference's training data that
	// holds the model's output.
	PredictionColumn string
	// LearnSamples, when there is no Reference, learns a model's reference
	// from its first LearnSamples records, then freezes it (and writes it
	// under the storage path). 0 disables learning.
	LearnSamples int
	// Windows are the sliding windows scored (default 5m, 1h, 1d).
	Windows []time.Duration
	// Detector tunes the decisions: false-alarm level, minimum samples.
	Detector drift.Options
}

// driftState is a model's drift detection: its reference, one window per
// feature, and the decisions' detector. It is guarded by its model's mu.
type driftState struct {
	*reference
	source  string
	windows []*drift.Window
	feats   []*feature // the sidecar's feature of each profile feature, once seen
	pred    int        // index of the prediction column, or -1
	seen    []uint32   // epoch in which each feature was last seen in a record
	epoch   uint32
	index   map[string]int // profile feature by name
	// With a multivariate reference: mvPos is each profile feature's
	// place in mvX (-1: none), mvX the record's values (NaN: not given),
	// mvN how many it gave, and mvErr the index of the reconstruction
	// error's feature.
	mv    *drift.Multivariate
	mvPos []int
	mvX   []float64
	mvN   int
	mvErr int
}

func newDriftState(ref *reference, source string, windows []time.Duration) (*driftState, error) {
	p := ref.profile
	ds := &driftState{reference: ref, source: source, pred: -1,
		windows: make([]*drift.Window, len(p.Features)),
		feats:   make([]*feature, len(p.Features)),
		seen:    make([]uint32, len(p.Features)),
		index:   make(map[string]int, len(p.Features)),
	}
	for i, f := range p.Features {
		ds.index[f.Name] = i
		w, err := drift.NewWindow(f, drift.WindowOptions{Spans: windows})
		if err != nil {
			return nil, fmt.Errorf("feature %q: %w", f.Name, err)
		}
		ds.windows[i] = w
		if f.Prediction {
			ds.pred = i
		}
	}
	ds.mvErr = -1
	if mv := p.Multivariate; mv != nil {
		ds.mv, ds.mvErr = mv, ds.index[drift.ReconstructionError]
		ds.mvPos = make([]int, len(p.Features))
		for i := range ds.mvPos {
			ds.mvPos[i] = -1
		}
		for j, name := range mv.Features {
			ds.mvPos[ds.index[name]] = j
		}
		ds.mvX = make([]float64, len(mv.Features))
		ds.resetRecord()
	}
	return ds, nil
}

// multivariate keeps the value of profile feature k for the record's
// reconstruction error. Only a finite number counts as given, a number in a
// string included, as the feature's window and `exporter drift` read it.
func (ds *driftState) multivariate(k int, v payload.Value) {
	if ds.mv == nil || ds.mvPos[k] < 0 {
		return
	}
	x := v.Num
	switch v.Kind {
	case payload.KindNumber, payload.KindBool:
	case payload.KindString:
		var err error
		if x, err = strconv.ParseFloat(strings.TrimSpace(string(v.Str)), 64); err != nil {
			return
		}
	default:
		return
	}
	if x-x != 0 { // NaN, ±Inf: missing, as in the window
		return
	}
	ds.mvX[ds.mvPos[k]] = x
	ds.mvN++
}

// resetRecord forgets the record's values for the next one.
func (ds *driftState) resetRecord() {
	for j := range ds.mvX {
		ds.mvX[j] = math.NaN()
	}
	ds.mvN = 0
}

// learner collects a model's first records to build its reference from.
type learner struct {
	target, n int
	cols      map[string]*learnColumn
	order     []string
	// class and unnamed hold, per record, what its prediction says by
	// position (learnedPrediction): the class of models[].classes it
	// names (classOf), or "", and whether it gave only positions that no
	// class names.
	class   []string
	unnamed []bool
}

// learnColumn holds a column's values, one per record in both slices: a
// number (NaN when the record gave none) and a string ("" when it gave
// none, or the text of a number read from CSV), so that the columns stay
// aligned row by row, as the multivariate reference needs them.
type learnColumn struct {
	num     []float64
	str     []string
	strings bool // one value was a string: the column is categorical
}

// add collects rec, whose prediction classes (models[].classes) name by
// position, as the live windows read it (driftState.predictedClass): a
// probability vector is its class, which makes the prediction categorical.
// It reports whether rec's prediction gave only positions that classes
// does not name: it is not guessed, but left out of the reference.
func (l *learner) add(rec *payload.Record, classes []string) (unnamed bool) {
	l.n++
	for i := range rec.Features {
		l.value(string(rec.Features[i].Name), rec.Features[i].Value)
	}
	pred, class := rec.Prediction, ""
	if pred.Kind == payload.KindNumber || pred.Kind == payload.KindMissing && len(rec.Scores) > 0 {
		class = classOf(classes, rec)
	}
	if pred.Kind == payload.KindMissing && len(rec.Scores) > 0 {
		// Positions only: its class, or none.
		unnamed = class == ""
		if !unnamed {
			pred = payload.Value{Kind: payload.KindString, Str: []byte(class)}
		}
	}
	l.value(PredictionColumn, pred)
	l.class, l.unnamed = append(l.class, class), append(l.unnamed, unnamed)
	// The columns this record lacks, or gave twice, are aligned again.
	for _, c := range l.cols {
		for len(c.num) < l.n {
			c.num, c.str = append(c.num, math.NaN()), append(c.str, "")
		}
		c.num, c.str = c.num[:l.n], c.str[:l.n]
	}
	return unnamed
}

func (l *learner) value(name string, v payload.Value) {
	c, ok := l.cols[name]
	if !ok {
		// Missing in the records before this one.
		c = &learnColumn{num: make([]float64, l.n-1), str: make([]string, l.n-1)}
		for i := range c.num {
			c.num[i] = math.NaN()
		}
		l.cols[name] = c
		l.order = append(l.order, name)
	}
	x, s := math.NaN(), ""
	switch v.Kind {
	case payload.KindNumber, payload.KindBool:
		// A number with its text (a CSV cell) keeps it, should the column
		// turn out categorical: "007" is not 7 there.
		x, s = v.Num, string(v.Str)
	case payload.KindString:
		s, c.strings = string(v.Str), true
	}
	c.num, c.str = append(c.num, x), append(c.str, s)
}

// columns returns what was learned, row by row: a column is categorical as
// soon as it held one string (its numbers are then written as strings: as
// the text they came in, from CSV, else in Go's shortest form, and a NaN,
// as a record without the column, is missing). The prediction is apart
// (learnedPrediction), nil without one, and pos is its place among the
// columns.
func (l *learner) columns() (cols []drift.Column, pred *drift.Column, pos int) {
	cols = make([]drift.Column, 0, len(l.order))
	for _, name := range l.order {
		c := l.cols[name]
		if name == PredictionColumn {
			pred, pos = l.prediction(c), len(cols)
			continue
		}
		col := drift.Column{Name: name}
		switch {
		case c.strings:
			col.Str = make([]string, len(c.str))
			for i := range c.str {
				col.Str[i] = c.text(i)
			}
		case slices.ContainsFunc(c.num, isNumber):
			col.Num = c.num
		default:
			continue // only missing values: nothing to profile
		}
		cols = append(cols, col)
	}
	return cols, pred, pos
}

// text returns row i of a categorical column.
func (c *learnColumn) text(i int) string {
	if s := c.str[i]; s != "" || c.num[i] != c.num[i] {
		return s
	}
	// ±Inf as the string drift.NonFinite reads, which BuildProfile
	// counts as missing, as it counts JSON Lines' Infinity in a
	// categorical column.
	return drift.FormatNumber(c.num[i])
}

// prediction returns the learned predictions c as the live windows will
// read them against the reference they make (driftState.predictedClass),
// or nil when there is nothing to profile. A prediction that gave only
// positions that no class names (unnamed) is left out, as the live
// windows leave it out (unnamed_class), rather than counted as missing.
// The column is categorical when a prediction named its class, by name or
// by a vector of models[].classes; its numbers are then the class they
// index, unless they are one of the names given (a class "1"). Numbers
// alone are the classes they index when every one is an index of
// models[].classes, else numbers (a regression, a binary classifier's
// score).
func (l *learner) prediction(c *learnColumn) *drift.Column {
	col := &drift.Column{Name: PredictionColumn}
	categorical, byIndex := c.strings, !c.strings
	for i, x := range c.num {
		if !l.unnamed[i] && isFinite(x) && (l.class[i] == "" || !predclass.IsIndex(x, math.MaxInt)) {
			byIndex = false
		}
	}
	switch {
	case categorical:
		names := map[string]bool{}
		for i, s := range c.str {
			if c.num[i] != c.num[i] && s != "" {
				names[s] = true
			}
		}
		for i := range c.str {
			if l.unnamed[i] {
				continue
			}
			s := c.text(i)
			if c.num[i] == c.num[i] && !names[s] && l.class[i] != "" {
				s = l.class[i]
			}
			col.Str = append(col.Str, s)
		}
	case byIndex && slices.ContainsFunc(c.num, isFinite):
		for i, x := range c.num {
			if l.unnamed[i] {
				continue
			}
			s := ""
			if x == x {
				s = l.class[i]
			}
			col.Str = append(col.Str, s)
		}
	default:
		for i, x := range c.num {
			if !l.unnamed[i] {
				col.Num = append(col.Num, x)
			}
		}
		if !slices.ContainsFunc(col.Num, isNumber) {
			return nil // only missing values
		}
	}
	if col.Len() == 0 {
		return nil
	}
	return col
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func isNumber(x float64) bool { return x == x }

// driftConfig is the drift set-up shared by all models.
type driftConfig struct {
	opts    DriftOptions
	storage string // directory for learned profiles, or ""

	mu   sync.Mutex
	refs map[string]*cachedReference // --drift.reference's and models[].drift's, by file and prediction column
}

func newDriftConfig(o DriftOptions, storagePath string) (*driftConfig, error) {
	if len(o.Windows) == 0 {
		o.Windows = drift.DefaultWindowOptions().Spans
	}
	dc := &driftConfig{opts: o}
	if storagePath != "" {
		dc.storage = filepath.Join(storagePath, "drift")
		if err := os.MkdirAll(dc.storage, 0o755); err != nil {
			return nil, fmt.Errorf("couldn't create --storage.path: %w", err)
		}
	}
	return dc, nil
}

// Where a model's reference came from, the source label of
// modelmon_drift_reference_info.
const (
	driftSourceConfig  = "config"  // models[].drift
	driftSourceFile    = "file"    // --drift.reference
	driftSourceLearned = "learned" // learned from the model's first records
)

// reference is a reference profile, ready: its detector, and the digest
// its drift windows are saved with (what they count against).
type reference struct {
	profile *drift.Profile
	det     *drift.Detector
	digest  [sha256.Size]byte // of the profile as Profile.Save writes it
	// features are the digests of its features (featureDigest), in order.
	features []string
}

// newReference readies profile p. --drift.method applies to the features
// p has: models of other features, and learned references, share it.
func (dc *driftConfig) newReference(p *drift.Profile) (*reference, error) {
	opts := dc.opts.Detector
	if len(opts.Methods) > 0 {
		opts.Methods = make(map[string]drift.Method, len(dc.opts.Detector.Methods))
		for name, m := range dc.opts.Detector.Methods {
			if _, ok := p.Feature(name); ok {
				opts.Methods[name] = m
			}
		}
	}
	det, err := drift.NewDetector(p, opts)
	if err != nil {
		return nil, err
	}
	ref := &reference{profile: p, det: det, features: make([]string, len(p.Features))}
	h := sha256.New()
	if err := p.Save(h); err != nil {
		return nil, err
	}
	h.Sum(ref.digest[:0])
	for i := range p.Features {
		if ref.features[i], err = featureDigest(p, i); err != nil {
			return nil, err
		}
	}
	return ref, nil
}

// featureDigest returns the digest of feature i of p, the digest label of
// modelmon_feature_reference_info: the first 8 bytes of the SHA-256 of its
// JSON, in hex, and of the multivariate reference behind the
// reconstruction error. It changes with the feature's bins and reference
// counts, so that the fleet's rules can tell when counters of one bin label
// stop counting under the same edges, and does not when another feature
// or the profile's order changes: a reload that leaves a feature alone
// leaves its digest alone.
func featureDigest(p *drift.Profile, i int) (string, error) {
	h := sha256.New()
	f := p.Features[i]
	b, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	h.Write(b)
	if f.Name == drift.ReconstructionError && p.Multivariate != nil {
		if b, err = json.Marshal(p.Multivariate); err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// cachedReference is a loaded reference, kept while its file does not
// change so that a reload does not profile it again.
type cachedReference struct {
	modTime time.Time
	size    int64
	ref     *reference
}

// loadReferences loads, into rc, the reference of --drift.reference and
// those of rc's models that name one (models[].drift), at start-up and on
// every reload, reusing those whose file did not change since the last
// load. Errors name the flag, or the configuration file (configFile) and
// the model; the running configuration keeps its references then.
func (dc *driftConfig) loadReferences(rc *runtimeConfig, configFile string) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	next := map[string]*cachedReference{}
	if path := dc.opts.Reference; path != "" {
		ref, err := dc.cachedReference(next, "--drift.reference", path, dc.opts.PredictionColumn, "")
		if err != nil {
			return err
		}
		rc.fileRef = ref
	}
	for _, m := range rc.cfg.Models {
		if m.Drift == nil || m.Drift.Reference == "" {
			continue // none, or a decision of its own alone
		}
		// --drift.prediction-column is the default of its
		// prediction_column, for training data with that column.
		ref, err := dc.cachedReference(next, "models[].drift.reference", m.Drift.Reference, m.Drift.PredictionColumn, dc.opts.PredictionColumn)
		if err != nil {
			return fmt.Errorf("couldn't load configuration (--config.file=%q): model %q: %w", configFile, m.Name, err)
		}
		mc := rc.models[m.Name]
		mc.ref = ref
		rc.models[m.Name] = mc
	}
	if err := dc.checkMethods(next); err != nil {
		return err
	}
	for _, m := range rc.cfg.Models {
		ref, source := rc.driftReference(m.Name)
		if ref == nil || len(m.Classes) == 0 {
			continue
		}
		if err := checkReferenceClasses(ref.profile, m.Classes); err != nil {
			flag := "models[].drift.reference"
			if source == driftSourceFile {
				flag = "--drift.reference"
			}
			return fmt.Errorf("couldn't load configuration (--config.file=%q): model %q: %s: %w", configFile, m.Name, flag, err)
		}
	}
	dc.refs = next
	return nil
}

// checkReferenceClasses returns an error for a reference p whose
// categorical prediction has a class that classes (the model's
// models[].classes) lacks, as `exporter profile` does: the sidecar names
// the model's probability vectors and class indexes by those classes, so
// none would ever be that class, and every prediction of it would count
// as another, a drift. A prediction given by name is not affected, but
// the list is the model's classes: the class is a typo on one side.
func checkReferenceClasses(p *drift.Profile, classes []string) error {
	i := slices.IndexFunc(p.Features, func(f *drift.Feature) bool { return f.Prediction })
	if i < 0 || p.Features[i].Categorical == nil {
		return nil
	}
	f := p.Features[i]
	names := make([]string, 0, len(f.Categorical.Categories)+len(f.Categorical.Rare))
	for _, c := range f.Categorical.Categories {
		names = append(names, c.Value)
	}
	names = append(names, f.Categorical.Rare...)
	for _, n := range names {
		if n != drift.OtherLabel && !slices.Contains(classes, n) {
			return fmt.Errorf("the prediction %q has the class %q, which models[].classes lacks (%s): the model's probability vectors and class indexes would never name it", f.Name, n, strings.Join(classes, ", "))
		}
	}
	return nil
}

// checkMethods returns an error for a --drift.method whose feature none of
// the references loaded has, a typo, unless references are learned, which
// may have it.
func (dc *driftConfig) checkMethods(refs map[string]*cachedReference) error {
	if dc.opts.LearnSamples > 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(dc.opts.Detector.Methods))
	for _, name := range names {
		if !slices.ContainsFunc(slices.Collect(maps.Values(refs)), func(c *cachedReference) bool {
			_, ok := c.ref.profile.Feature(name)
			return ok
		}) {
			return fmt.Errorf("--drift.method: no drift reference has a feature %q", name)
		}
	}
	return nil
}

// cachedReference returns the reference of file path (flag names where it
// was given, for errors), whose prediction column is prediction, else
// fallback where its training data have that column
// (driftref.LoadDefault), from next, from the last load if the file has
// the same modification time and size, or else loaded now; it adds it to
// next. The caller holds dc.mu.
func (dc *driftConfig) cachedReference(next map[string]*cachedReference, flag, path, prediction, fallback string) (*reference, error) {
	key := path + "\x00" + prediction + "\x00" + fallback
	if c := next[key]; c != nil {
		return c.ref, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("couldn't load %s=%q: %w", flag, path, err)
	}
	c := dc.refs[key]
	if c == nil || !c.modTime.Equal(fi.ModTime()) || c.size != fi.Size() {
		p, _, err := driftref.LoadDefault(path, prediction, fallback)
		if err != nil {
			return nil, fmt.Errorf("couldn't load %s=%q: %w", flag, path, err)
		}
		ref, err := dc.newReference(p)
		if err != nil {
			return nil, fmt.Errorf("couldn't use %s=%q: %w", flag, path, err)
		}
		c = &cachedReference{modTime: fi.ModTime(), size: fi.Size(), ref: ref}
	}
	next[key] = c
	return c.ref, nil
}

// learnerFor returns the learner a model without a reference (ds nil)
// starts, when the sidecar learns references; else nil.
func (dc *driftConfig) learnerFor(ds *driftState) *learner {
	if ds != nil || dc.opts.LearnSamples <= 0 {
		return nil
	}
	return &learner{target: dc.opts.LearnSamples, cols: map[string]*learnColumn{}}
}

// driftReference returns the reference model counts against under rc and
// where it came from: its own (models[].drift), else --drift.reference's;
// nil without either.
func (rc *runtimeConfig) driftReference(model string) (*reference, string) {
	switch {
	case rc == nil:
		return nil, ""
	case rc.models[model].ref != nil:
		return rc.models[model].ref, driftSourceConfig
	case rc.fileRef != nil:
		return rc.fileRef, driftSourceFile
	}
	return nil, ""
}

// stateFor returns the drift state a model starts with under rc: its
// reference (driftReference), or a learned profile restored from storage,
// or nil (learning, or no drift detection).
func (dc *driftConfig) stateFor(model string, rc *runtimeConfig) (*driftState, error) {
	if ref, source := rc.driftReference(model); ref != nil {
		return newDriftState(ref, source, dc.opts.Windows)
	}
	if dc.storage == "" || dc.opts.LearnSamples <= 0 {
		return nil, nil
	}
	p, err := drift.LoadFile(dc.learnedPath(model))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't restore the learned reference of model %q: %w", model, err)
	}
	ref, err := dc.newReference(p)
	if err != nil {
		return nil, err
	}
	return newDriftState(ref, driftSourceLearned, dc.opts.Windows)
}

func (dc *driftConfig) learnedPath(model string) string {
	return filepath.Join(dc.storage, url.PathEscape(model)+".profile.json")
}

// learned builds a model's reference from what its learner collected,
// freezes it and writes it to storage, so a restart does not learn again from
// data that may have drifted since.
func (dc *driftConfig) learned(model string, l *learner) (*driftState, error) {
	p, err := l.profile()
	if err != nil {
		return nil, err
	}
	ref, err := dc.newReference(p)
	if err != nil {
		return nil, err
	}
	if dc.storage != "" {
		if err := statefile.WriteFile(dc.learnedPath(model), p.Save); err != nil {
			return nil, err
		}
	}
	return newDriftState(ref, driftSourceLearned, dc.opts.Windows)
}

// profile builds the reference of what l collected. The prediction is
// profiled apart, from the records that gave one the live windows count
// (learnedPrediction): drift.BuildProfile takes columns of as many rows
// each, and leaves the prediction out of the multivariate reference
// anyway.
func (l *learner) profile() (*drift.Profile, error) {
	opts := drift.DefaultBuildOptions()
	cols, pred, pos := l.columns()
	if pred == nil || len(cols) == 0 {
		if pred != nil {
			cols, opts.Prediction = []drift.Column{*pred}, PredictionColumn
		}
		return drift.BuildProfile(cols, opts)
	}
	p, err := drift.BuildProfile(cols, opts)
	if err != nil {
		return nil, err
	}
	opts.Prediction, opts.NoMultivariate = PredictionColumn, true
	pp, err := drift.BuildProfile([]drift.Column{*pred}, opts)
	if err != nil {
		return nil, err
	}
	p.Features = slices.Insert(p.Features, pos, pp.Features[0])
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Drift windows file, as encodeWindows writes it: the magic "MMDW" and the
// version byte 1, the SHA-256 of the reference profile as Profile.Save
// writes it, the number of features (a uvarint), then per feature its name
// and its window's state (drift.Window.MarshalBinary), each a uvarint length
// and its bytes, and a CRC-32C (Castagnoli) of everything before it, 4 bytes
// big-endian.
const (
	windowsMagic   = "MMDW"
	windowsVersion = 1
)

var windowsCRC = crc32.MakeTable(crc32.Castagnoli)

// errReferenceChanged is restoreWindows's error for windows that counted
// against another reference.
var errReferenceChanged = errors.New("they counted against another reference")

func (dc *driftConfig) windowsPath(model string) string {
	return filepath.Join(dc.storage, url.PathEscape(model)+".windows")
}

// encodeWindows returns ds's sliding windows in the drift windows file's
// format. The caller holds the model's mu.
func (ds *driftState) encodeWindows() ([]byte, error) {
	b := append([]byte(windowsMagic), windowsVersion)
	b = append(b, ds.digest[:]...)
	b = binary.AppendUvarint(b, uint64(len(ds.windows)))
	for i, w := range ds.windows {
		state, err := w.MarshalBinary()
		if err != nil {
			return nil, err
		}
		name := ds.profile.Features[i].Name
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(len(state)))
		b = append(b, state...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, windowsCRC)), nil
}

// writeWindows writes a model's encoded windows for the next run,
// atomically and durably.
func (dc *driftConfig) writeWindows(model string, data []byte) error {
	return statefile.WriteFile(dc.windowsPath(model), func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// restoreWindows gives ds, just made, the sliding windows its model left
// at the last run, and returns how many features it restored: none without
// storage or a file. Windows that counted against another reference, or with
// other --drift.windows, are not restored (errReferenceChanged,
// drift.ErrWindowMismatch); nor is anything of a damaged file.
func (dc *driftConfig) restoreWindows(model string, ds *driftState) (int, error) {
	if dc.storage == "" {
		return 0, nil
	}
	data, err := os.ReadFile(dc.windowsPath(model))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	head := len(windowsMagic) + 1 + sha256.Size
	if len(data) < head+4 || string(data[:len(windowsMagic)]) != windowsMagic {
		return 0, errors.New("not a drift windows file")
	}
	if v := data[len(windowsMagic)]; v != windowsVersion {
		return 0, fmt.Errorf("unsupported drift windows file version %d", v)
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, windowsCRC) != binary.BigEndian.Uint32(data[len(body):]) {
		return 0, errors.New("checksum mismatch (truncated or altered)")
	}
	if !bytes.Equal(body[len(windowsMagic)+1:head], ds.digest[:]) {
		return 0, errReferenceChanged
	}
	r := bytes.NewReader(body[head:])
	chunk := func() ([]byte, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return nil, errors.New("corrupt drift windows file")
		}
		b := make([]byte, n)
		_, _ = r.Read(b)
		return b, nil
	}
	count, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, errors.New("corrupt drift windows file")
	}
	restored := map[int]*drift.Window{}
	for range count {
		name, err := chunk()
		if err != nil {
			return 0, err
		}
		state, err := chunk()
		if err != nil {
			return 0, err
		}
		i, ok := ds.index[string(name)]
		if !ok {
			continue
		}
		w, err := drift.NewWindow(ds.profile.Features[i], drift.WindowOptions{Spans: dc.opts.Windows})
		if err != nil {
			return 0, err
		}
		if err := w.UnmarshalBinary(state); err != nil {
			return 0, fmt.Errorf("feature %q: %w", name, err)
		}
		restored[i] = w
	}
	for i, w := range restored {
		ds.windows[i] = w
	}
	return len(restored), nil
}

// windowLabels are the window label values of spans ("5m", "1h", "1d").
func windowLabels(spans []time.Duration) []string {
	out := make([]string, len(spans))
	for i, d := range spans {
		out[i] = promModel.Duration(d).String()
	}
	return out
}

// snapshot copies a model's drift state for a scrape.
func (ds *driftState) snapshot(model string, now time.Time, windows []string) collector.DriftModel {
	dm := collector.DriftModel{Model: model, Detector: ds.det, Source: ds.source, Windows: windows}
	for i, w := range ds.windows {
		f := collector.DriftFeature{Feature: ds.profile.Features[i], Digest: ds.features[i], Totals: w.Totals()}
		for k := range windows {
			f.Counts = append(f.Counts, w.Counts(now, k))
		}
		dm.Features = append(dm.Features, f)
	}
	return dm
}

// indexOf returns f's index in the profile, or -1, caching it on f.
func (ds *driftState) indexOf(f *feature) int {
	if f.ds != ds {
		f.ds, f.idx = ds, -1
		if i, ok := ds.index[f.name]; ok {
			f.idx = i
			ds.feats[i] = f
		}
	}
	return f.idx
}

// featureLocked returns m's feature for profile feature k: the one seen in
// traffic, or else the one of its name. The caller holds m.mu.
func (ds *driftState) featureLocked(m *model, k int) *feature {
	if f := ds.feats[k]; f != nil {
		return f
	}
	return m.featureNamedLocked(ds.profile.Features[k].Name)
}

// predictedClass returns the class rec predicts for a reference whose
// prediction is categorical, when rec names none itself: its probability
// vector's most probable class, or the class its number indexes, in the
// order of classes (models[].classes), as the label join reads them
// (readPrediction). named is false where rec's own prediction is counted
// as it is: a numeric reference, a named class, a number that is one of
// the reference's categories, no prediction. class is "" when rec gives
// only positions and classes does not name them: comparing position 0
// with the reference's category "cat" would be a guess, so the caller
// counts it as unscorable instead.
func (ds *driftState) predictedClass(classes []string, rec *payload.Record) (class string, named bool) {
	f := ds.profile.Features[ds.pred]
	if f.Kind != drift.Categorical {
		return "", false
	}
	v := rec.Prediction
	switch v.Kind {
	case payload.KindString, payload.KindBool:
		return "", false
	case payload.KindNumber:
		if v.Str != nil && f.HasCategory(string(v.Str)) || f.HasCategory(drift.FormatNumber(v.Num)) {
			return "", false
		}
	default:
		if len(rec.Scores) == 0 {
			return "", false
		}
	}
	return classOf(classes, rec), true
}

// classOf returns the class of classes (models[].classes) that rec, giving
// only positions, predicts, by predclass's rule, as `exporter drift` reads
// it: the class its scores name (readPrediction, as the label join reads
// them), else the class predclass.Of gives its scores or predclass.Number
// its number; "" when classes does not name it.
func classOf(classes []string, rec *payload.Record) string {
	var binary [2]float64
	if pv, ok := readPrediction(classes, rec, &binary); ok && pv.isClass && pv.probs != nil {
		return pv.className()
	}
	var class string
	switch v := rec.Prediction; {
	case len(rec.ScoreLabels) > 0:
		// Scores by name that readPrediction could not take.
	case len(rec.Scores) > 0:
		class, _ = predclass.Of(classes, rec.Scores)
	case v.Kind == payload.KindNumber:
		class, _ = predclass.Number(classes, v.Num)
	}
	return class
}

// addClass counts class, the value of the categorical profile feature i,
// and returns the reason it is invalid, if it is.
func (ds *driftState) addClass(i int, now time.Time, class string) string {
	ds.seen[i] = ds.epoch
	if viol := ds.windows[i].AddCategory(now, class); viol != drift.ViolationNone {
		return viol.String()
	}
	return ""
}

// add counts one value of profile feature i and returns the reason it is
// invalid, if it is.
func (ds *driftState) add(i int, now time.Time, v payload.Value) string {
	w := ds.windows[i]
	ds.seen[i] = ds.epoch
	var viol drift.Violation
	switch v.Kind {
	case payload.KindNumber, payload.KindBool:
		if v.Str != nil && ds.profile.Features[i].Kind == drift.Categorical {
			// A number in text without types (a CSV cell) given to a
			// categorical feature is that text, "007" and not 7, as a
			// string in JSON is and as `exporter drift` reads the column.
			viol = w.AddBytes(now, v.Str)
			break
		}
		viol = w.Add(now, v.Num)
	case payload.KindString:
		viol = w.AddBytes(now, v.Str)
	default:
		viol = w.AddMissing(now)
	}
	if viol == drift.ViolationNone {
		return ""
	}
	return viol.String()
}
