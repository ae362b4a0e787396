package driftcli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/modelmon/modelmon/drift"
)

// The report formats, values of drift's --output.
const (
	OutputText = "text"
	OutputJSON = "json"
)

func checkOutput(format string) error {
	switch format {
	case "", OutputText, OutputJSON:
		return nil
	}
	return fmt.Errorf("unknown output format %q (want text or json)", format)
}

// Report is the outcome of the drift command. Its JSON form is the command's
// --output=json; README's `exporter drift` section documents each field, and
// the names of features, drift_share, dataset_drifted, model (whose fields
// are drift.ModelResult's) and the features' name, type, method, score,
// threshold, p_value, drifted and scores are a public interface: fields may
// be added, never renamed.
type Report struct {
	// Features holds one result per feature of the reference, in its order.
	Features []FeatureResult `json:"features"`
	// DriftShare is the share of the ready features (the prediction left out)
	// that drifted; 0 when none is ready.
	DriftShare float64 `json:"drift_share"`
	// DatasetDrifted says DriftShare reached DatasetThreshold.
	DatasetDrifted bool `json:"dataset_drifted"`
	// DatasetThreshold is the share of drifted features at which the dataset
	// drifts.
	DatasetThreshold float64 `json:"dataset_threshold"`
	// ReadyFeatures and DriftedFeatures count the features the share is over.
	ReadyFeatures   int `json:"ready_features"`
	DriftedFeatures int `json:"drifted_features"`
	// Reason explains the dataset's verdict.
	Reason string `json:"reason"`
	// Model is the model-level decision: drift when any feature's p-value
	// (the prediction left out) is below the threshold corrected for
	// testing them all (--correction).
	Model drift.ModelResult `json:"model"`
	// Reference and Current name the inputs.
	Reference string `json:"reference"`
	Current   string `json:"current"`
	// Warnings about the inputs: columns only one side has, values of the
	// wrong type.
	Warnings []string `json:"warnings"`
	// Errors name the features whose current data broke (FeatureResult's
	// Error), with the file: the command then exits with ExitError.
	Errors []string `json:"errors"`
}

// FeatureResult is the drift decision of one feature.
type FeatureResult struct {
	Name string     `json:"name"`
	Type drift.Kind `json:"type"`
	// Method decides Drifted; Score, Threshold and PValue are its.
	Method drift.Method `json:"method"`
	// Score is the method's statistic; nil when the feature is not ready.
	Score *float64 `json:"score"`
	// Threshold applies to Score for the distances (psi, jensenshannon,
	// hellinger, wasserstein: drift when Score > Threshold) and to PValue for
	// the tests (ks, chisquare, z, missing: drift when PValue < Threshold);
	// nil when the feature is not ready.
	Threshold *float64 `json:"threshold"`
	// PValue is nil for the distances and when the feature is not ready.
	PValue  *float64 `json:"p_value"`
	Drifted bool     `json:"drifted"`
	// Scores holds the statistic of every method that applies, by method, plus
	// ks_exact and wasserstein_exact when both sides are raw data.
	Scores map[string]float64 `json:"scores"`
	// Prediction marks the model's output, which the dataset's verdict leaves
	// out.
	Prediction bool `json:"prediction"`
	// Ready says the feature had enough values to be decided.
	Ready bool `json:"ready"`
	// N and Missing count the current data's values and missing values.
	N       int64 `json:"n"`
	Missing int64 `json:"missing"`
	// Calibrated says Threshold was calibrated for N values, not fixed.
	Calibrated bool `json:"calibrated"`
	// DetectablePSI is the smallest shift, as PSI, a batch of N values
	// could show against the reference (drift.DetectablePSI); nil with no
	// values.
	DetectablePSI *float64 `json:"detectable_psi,omitempty"`
	// KSExactPValue is the p-value of ks_exact.
	KSExactPValue *float64 `json:"ks_exact_p_value,omitempty"`
	// Violations counts the current values that break the reference's
	// constraints, by reason (out_of_range, unseen_category, missing, nan,
	// inf, type).
	Violations map[string]uint64 `json:"violations,omitempty"`
	// Error says why the feature's current data could not be decided on
	// though it has values: a numeric feature most of whose values are not
	// numbers. Such a feature is not ready.
	Error  string `json:"error,omitempty"`
	Reason string `json:"reason"`
}

func newFeatureResult(r drift.Result, t drift.Totals) FeatureResult {
	fr := FeatureResult{
		Name: r.Feature, Type: r.Kind, Method: r.Method, Drifted: r.Drifted, Scores: map[string]float64{},
		Prediction: r.Prediction, Ready: r.Ready, N: r.N, Missing: r.Missing, Reason: r.Reason,
	}
	if r.DetectablePSI != nil {
		fr.DetectablePSI = finitePtr(*r.DetectablePSI)
	}
	for m, v := range r.Scores {
		if isFinite(v) { // JSON has no NaN
			fr.Scores[string(m)] = v
		}
	}
	if r.Ready {
		fr.Score, fr.Threshold = finitePtr(r.Score), finitePtr(r.Threshold)
		if r.PValue != nil {
			fr.PValue = finitePtr(*r.PValue)
		}
		fr.Calibrated = r.Tests[r.Method].Calibrated
	}
	for _, v := range drift.Violations() {
		if n := t.Violations[v]; n > 0 {
			if fr.Violations == nil {
				fr.Violations = map[string]uint64{}
			}
			fr.Violations[v.String()] = n
		}
	}
	return fr
}

// Write writes r in format, "text" (the default) or "json".
func (r *Report) Write(w io.Writer, format string) error {
	if err := checkOutput(format); err != nil {
		return err
	}
	if format == OutputJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(r)
	}
	return r.writeText(w)
}

// writeText writes an aligned table, one row per feature, then the model's
// verdict and the dataset's. The dataset's stays the last line, as it was
// before the model's was added.
func (r *Report) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tTYPE\tMETHOD\tSCORE\tTHRESHOLD\tP-VALUE\tRESULT\tREASON")
	for _, f := range r.Features {
		name := f.Name
		if f.Prediction {
			name += " (prediction)"
		}
		result := "ok"
		switch {
		case f.Error != "":
			result = "ERROR"
		case !f.Ready:
			result = "-"
		case f.Drifted:
			result = "DRIFT"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, f.Type, f.Method, num(f.Score), num(f.Threshold), num(f.PValue), result, f.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "model: %s\ndataset: %s\n", r.modelVerdict(), r.verdict())
	return err
}

// modelVerdict is the model line of the text report: "2/4 features'
// p-values < 0.0125 (bonferroni, α=0.05): drift".
func (r *Report) modelVerdict() string {
	m := r.Model
	if m.Features == 0 {
		return "no feature ready: no drift"
	}
	verdict := "no drift"
	if m.Drift {
		verdict = "drift"
	}
	return fmt.Sprintf("%d/%d features' p-values < %.4g (%s, α=%g): %s", m.Drifted, m.Features, m.Threshold, m.Correction, m.Alpha, verdict)
}

// verdict is the dataset line of the text report: "drifted 2/4 features
// (share 0.5 ≥ 0.5): drift", then the features whose data broke, if any:
// "drifted 1/3 features (share 0.333 < 0.5): no drift; error: the data of
// age broke".
func (r *Report) verdict() string {
	var broken []string
	for _, f := range r.Features {
		if f.Error != "" {
			broken = append(broken, f.Name)
		}
	}
	if len(broken) > 0 {
		return r.shareVerdict() + fmt.Sprintf("; error: the data of %s broke", strings.Join(broken, ", "))
	}
	return r.shareVerdict()
}

// shareVerdict is the verdict of the share of drifted features.
func (r *Report) shareVerdict() string {
	if r.ReadyFeatures == 0 {
		return "no feature ready: no drift"
	}
	cmp, verdict := "<", "no drift"
	if r.DatasetDrifted {
		cmp, verdict = "≥", "drift"
	}
	return fmt.Sprintf("drifted %d/%d features (share %.3g %s %.3g): %s", r.DriftedFeatures, r.ReadyFeatures, r.DriftShare, cmp, r.DatasetThreshold, verdict)
}

func num(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'g', 4, 64)
}
