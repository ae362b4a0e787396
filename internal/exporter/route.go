package exporter

import (
	"bytes"
	"path"
	"strings"

	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/payload"
)

// route is what the hot path learns from a request line.
type route struct {
	predict bool
	format  payload.Format
	model   []byte
	version []byte
	// bodyModel: the request names its model in its JSON body, as the
	// APIs of generative models do.
	bodyModel bool
	// feedback: Seldon Core 1's feedback API, whose truth is labels.
	feedback bool
}

var (
	kservePrefix = []byte("/v1/models/")
	oipPrefix    = []byte("/v2/models/")
	oipRepo      = []byte("/v2/repository/")
	predictVerb  = []byte(":predict")
	explainVerb  = []byte(":explain")
	classifyVerb = []byte(":classify") // TF-Serving's Classify and Regress APIs
	regressVerb  = []byte(":regress")
	labelsSeg    = []byte("/labels/")
	// TorchServe's inference API.
	torchServePrefix = []byte("/predictions/")
	inferSuffix      = []byte("/infer")
	// The OIP's generate extension (Triton, KServe's LLM runtimes): not a
	// prediction unless prediction_paths lists it, but it names its model.
	generateSuffixes = [][]byte{[]byte("/generate"), []byte("/generate_stream")}
	versionsSeg      = []byte("/versions/")
	invocations      = []byte("/invocations")
	// The APIs of generative models whose requests name the model in their
	// body ("model"): OpenAI's (vLLM, TGI, KServe's Hugging Face runtime
	// under /openai, Ollama) and Ollama's own.
	bodyModelSuffixes = [][]byte{
		[]byte("/v1/chat/completions"), []byte("/v1/completions"), []byte("/v1/embeddings"),
		[]byte("/api/generate"), []byte("/api/chat"), []byte("/api/embed"),
	}
	methodPOST = []byte("POST")
	// Seldon Core 1's ingress path to a deployment, and its feedback API
	// (ground truth and rewards, not predictions).
	seldonPrefix   = []byte("/seldon/")
	seldonFeedback = [][]byte{[]byte("/api/v1.0/feedback"), []byte("/api/v0.1/feedback")}
)

// parseRoute reads the model, version and payload format from a request path:
// KServe's /v1/models/{name}:predict (and TF-Serving's versions, labels,
// :classify and :regress), TorchServe's /predictions/{name}[/{version}], the
// Open Inference Protocol's
// /v2/models/{name}[/versions/{version}]/infer (and the model of its
// generate extension), MLflow's /invocations and Seldon Core 1's
// [/seldon/{namespace}/{deployment}]/api/v1.0/predictions. It does not
// allocate.
func parseRoute(method, p []byte, rc *runtimeConfig) route {
	var r route
	switch {
	case bytes.HasPrefix(p, kservePrefix):
		rest := p[len(kservePrefix):]
		if i := bytes.LastIndexByte(rest, ':'); i > 0 {
			name, verb := rest[:i], rest[i:]
			// TF-Serving names a version, or a label of one, before the verb.
			var version []byte
			if j := bytes.Index(name, versionsSeg); j > 0 {
				name, version = name[:j], name[j+len(versionsSeg):]
			} else if j := bytes.Index(name, labelsSeg); j > 0 {
				name, version = name[:j], name[j+len(labelsSeg):]
			}
			if bytes.IndexByte(name, '/') < 0 && bytes.IndexByte(version, '/') < 0 {
				r.model, r.version = name, version
				switch {
				case bytes.Equal(verb, predictVerb), bytes.Equal(verb, classifyVerb), bytes.Equal(verb, regressVerb):
					r.predict, r.format = true, payload.FormatKServeV1
					return r
				case bytes.Equal(verb, explainVerb):
					return r
				}
				r.model, r.version = nil, nil
			}
		}
	case bytes.HasPrefix(p, torchServePrefix):
		// TorchServe's /predictions/{name}[/{version}]: a prediction by the
		// rules below (a POST), of the model and version it names.
		rest := p[len(torchServePrefix):]
		name, version, _ := bytes.Cut(rest, []byte("/"))
		if len(name) > 0 && bytes.IndexByte(version, '/') < 0 {
			r.model, r.version = name, version
		}
	case bytes.HasPrefix(p, oipPrefix) && bytes.HasSuffix(p, inferSuffix):
		if r.model, r.version = oipModel(p, inferSuffix); r.model != nil {
			r.predict, r.format = true, payload.FormatOIP
			return r
		}
	case bytes.HasPrefix(p, oipPrefix):
		for _, suffix := range generateSuffixes {
			if bytes.HasSuffix(p, suffix) {
				r.model, r.version = oipModel(p, suffix)
				break
			}
		}
	case bytes.Equal(p, invocations):
		r.format = payload.FormatMLflow
	case payload.IsSeldonPredictions(p):
		r.format = payload.FormatSeldon
		r.model = seldonDeployment(p)
	default:
		for _, suffix := range seldonFeedback {
			if bytes.HasSuffix(p, suffix) {
				r.feedback, r.model = true, seldonDeployment(p)
			}
		}
		for _, suffix := range bodyModelSuffixes {
			if bytes.HasSuffix(p, suffix) {
				r.bodyModel = true
				break
			}
		}
	}
	if len(rc.patterns) > 0 {
		r.predict = rc.matchPath(p)
		return r
	}
	r.predict = bytes.Equal(method, methodPOST) && !bytes.HasPrefix(p, oipRepo) && !bytes.HasPrefix(p, oipPrefix) && !r.feedback
	return r
}

// seldonDeployment is the deployment of a prediction or feedback path
// through Seldon Core 1's ingress, /seldon/{namespace}/{deployment}/api/…;
// nil for any other path.
func seldonDeployment(p []byte) []byte {
	rest, ok := bytes.CutPrefix(p, seldonPrefix)
	if !ok {
		return nil
	}
	_, rest, ok = bytes.Cut(rest, []byte("/")) // the namespace
	if !ok {
		return nil
	}
	deployment, rest, ok := bytes.Cut(rest, []byte("/"))
	if !ok || len(deployment) == 0 || bytes.Count(rest, []byte("/")) != 2 {
		return nil // not /api/{v}/predictions right after the deployment
	}
	return deployment
}

// oipModel reads the model and version of an OIP path
// /v2/models/{name}[/versions/{version}]{suffix}; nil when it has none.
func oipModel(p, suffix []byte) (model, version []byte) {
	rest := p[len(oipPrefix) : len(p)-len(suffix)]
	if i := bytes.Index(rest, versionsSeg); i > 0 {
		model, version = rest[:i], rest[i+len(versionsSeg):]
	} else {
		model = rest
	}
	if len(model) == 0 || bytes.IndexByte(model, '/') >= 0 || bytes.IndexByte(version, '/') >= 0 {
		return nil, nil
	}
	return model, version
}

// runtimeConfig is a loaded configuration prepared for the hot path.
type runtimeConfig struct {
	cfg           *config.Config
	modelHeader   []byte // lower case
	versionHeader []byte // lower case
	defaultModel  []byte
	patterns      []string
	models        map[string]modelConfig
	// fileRef is --drift.reference's reference, loaded with the
	// configuration (and again on reload); nil without the flag.
	fileRef *reference
}

type modelConfig struct {
	format       payload.Format
	featureNames []string
	idPath       []string // nil: the id header only
	classes      []string
	// ref is the model's own drift reference (models[].drift), once
	// loaded; nil without one.
	ref *reference
	// segments are the features its joined labels are also counted by.
	segments []config.Segment
	// segmentClasses is how many of its classes its joined labels are
	// also counted by per segment value (models[].segment_classes); 0:
	// none.
	segmentClasses int
	// scoreBuckets are modelmon_prediction_score's classic buckets for
	// the model; nil: collector.ScoreBuckets.
	scoreBuckets []float64
	// errorBuckets are modelmon_prediction_error_magnitude's classic
	// buckets for the model (models[].error_buckets); nil: none, the
	// native histogram alone.
	errorBuckets []float64
	// calibrationBins is the number of confidence bins its calibration
	// is counted in (models[].calibration_bins); 0: the default.
	calibrationBins int
	// labelOffset is its regression labels' offset
	// (models[].label_offset); nil: none given.
	labelOffset *float64
}

// confidenceBins returns the number of bins the model's confidences are
// counted in.
func (mc modelConfig) confidenceBins() int {
	if mc.calibrationBins == 0 {
		return config.DefaultCalibrationBins
	}
	return mc.calibrationBins
}

func newRuntimeConfig(cfg *config.Config) (*runtimeConfig, error) {
	rc := &runtimeConfig{
		cfg:           cfg,
		modelHeader:   []byte(strings.ToLower(cfg.ModelHeader)),
		versionHeader: []byte(strings.ToLower(cfg.VersionHeader)),
		defaultModel:  []byte(cfg.DefaultModel),
		patterns:      cfg.PredictionPaths,
		models:        map[string]modelConfig{},
	}
	if len(rc.defaultModel) == 0 {
		rc.defaultModel = []byte("default")
	}
	for _, p := range cfg.PredictionPaths {
		if _, err := path.Match(strings.TrimSuffix(p, "/**"), "/"); err != nil {
			return nil, err
		}
	}
	for _, m := range cfg.Models {
		f := payload.FormatUnknown
		if m.Format != "" && m.Format != "auto" {
			var err error
			if f, err = payload.ParseFormat(m.Format); err != nil {
				return nil, err
			}
		}
		mc := modelConfig{format: f, featureNames: m.FeatureNames, classes: m.Classes, segments: m.Segments, segmentClasses: m.SegmentClasses, scoreBuckets: m.ScoreBuckets,
			errorBuckets: m.ErrorBuckets, calibrationBins: m.CalibrationBins, labelOffset: m.LabelOffset}
		if m.IDPath != "" {
			mc.idPath = strings.Split(m.IDPath, ".")
		}
		rc.models[m.Name] = mc
	}
	return rc, nil
}

// matchPath reports whether p matches a configured prediction path pattern.
func (rc *runtimeConfig) matchPath(p []byte) bool {
	s := string(p)
	for _, pat := range rc.patterns {
		if prefix, ok := strings.CutSuffix(pat, "/**"); ok {
			if s == prefix || strings.HasPrefix(s, prefix+"/") {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, s); ok {
			return true
		}
	}
	return false
}
