package main

import (
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/modelmon/modelmon/internal/driftcli"
)

// addCommands registers the exporter's subcommands other than serve and
// returns what runs each, by its full command name. A command returns the
// process's exit code.
//
// The drift commands bind their flags to the fields of driftcli's command
// structs, which do the work: see that package for what each flag means.
func addCommands(app *kingpin.Application) map[string]func(*slog.Logger) int {
	env := func(logger *slog.Logger) driftcli.Env {
		return driftcli.Env{Prog: app.Name, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Logger: logger}
	}

	var profile driftcli.ProfileCommand
	pc := app.Command("profile", "Build a reference profile from training data (CSV, JSON Lines or Parquet) and write it as JSON.")
	pc.Flag("input", "Training data: a .csv, .jsonl, .ndjson or .parquet file, or - for stdin (with --format).").Required().StringVar(&profile.Input)
	pc.Flag("output", "Profile file to write, or - for stdout.").Required().StringVar(&profile.Output)
	pc.Flag("format", "Format of the input when it is stdin or its extension is none of .csv, .jsonl, .ndjson, .parquet: csv, jsonl or parquet.").StringVar(&profile.Format)
	buildFlags(pc, &profile.Build, "")
	pc.Flag("config.file", "Exporter configuration file: with --model, a class of the prediction that the model's models[].classes lacks is an error. Empty: none.").StringVar(&profile.Config)
	pc.Flag("model", "Model of --config.file the profile is for.").StringVar(&profile.Model)

	var dr driftcli.DriftCommand
	dc := app.Command("drift", "Compare data with a reference profile or training data, print each feature's drift and the dataset's verdict.")
	dc.Flag("reference", "Reference: a profile (.json) or training data (.csv, .jsonl, .ndjson, .parquet) to build one from. Empty: --model's models[].drift.reference in --config.file, profiled as the sidecar profiles it.").StringVar(&dr.Reference)
	dc.Flag("current", "Data to check: a .csv, .jsonl, .ndjson or .parquet file, or - for stdin (with --format).").Required().StringVar(&dr.Current)
	dc.Flag("format", "Format of the data read from stdin, or from a file whose extension is none of .csv, .jsonl, .ndjson, .parquet: csv, jsonl or parquet.").StringVar(&dr.Format)
	dc.Flag("output", "Format of the report: text or json.").Default(driftcli.OutputText).EnumVar(&dr.Output, driftcli.OutputText, driftcli.OutputJSON)
	dc.Flag("fail-on-drift", "Exit with status 1 when the dataset drifted.").BoolVar(&dr.FailOnDrift)
	dc.Flag("fail-on-model-drift", "Exit with status 1 when the model drifted: any feature's p-value below the threshold corrected by --correction.").BoolVar(&dr.FailOnModelDrift)
	dc.Flag("alpha", "False-alarm level of each feature's decision.").Default("0.05").Float64Var(&dr.Alpha)
	// No default for --correction: left out, --config.file's applies.
	dc.Flag("correction", "Correction of the model-level decision for testing every feature: bonferroni, fdr (Benjamini–Hochberg) or none. Empty: --config.file's, else bonferroni.").EnumVar(&dr.Correction, driftcli.Corrections()...)
	dc.Flag("correction-alpha", "Level of the model-level decision, in (0, 1). Use 0 for --config.file's, else --alpha.").Default("0").Float64Var(&dr.CorrectionAlpha)
	dc.Flag("config.file", "Exporter configuration file whose drift correction and correction_alpha (--model's models[].drift, else drift:'s) the model-level decision takes where --correction and --correction-alpha are not given, and whose --model's models[].drift.reference (and prediction_column) is the reference where --reference is not given. Empty: none.").StringVar(&dr.Config)
	dc.Flag("model", "Model of --config.file whose own drift correction, and reference, apply. Empty: drift:'s correction, and no reference.").StringVar(&dr.Model)
	dc.Flag("min-samples", "Number of values a feature needs in the current data to be decided.").Default("100").Int64Var(&dr.MinSamples)
	dc.Flag("method", "Method that decides drift for a feature, FEATURE=METHOD (psi, jensenshannon, hellinger, ks, wasserstein, chisquare, z, missing); repeatable.").StringsVar(&dr.Methods)
	dc.Flag("fixed-thresholds", "Decide with fixed thresholds (0.1 for distances, p-value below --alpha for tests) instead of thresholds calibrated to the data's size.").BoolVar(&dr.FixedThresholds)
	buildFlags(dc, &dr.Build, " Only for training data given with --reference: with a profile or --config.file's reference, a value other than the default is an error.")

	var rules driftcli.RulesCommand
	rc := app.Command("rules", "Print Prometheus recording rules that compute each feature's fleet-wide PSI from the sidecars' bin counters.")
	rc.Flag("profile", "Reference profile (.json) the sidecars run with.").Required().StringVar(&rules.Profile)
	rc.Flag("model", "Model whose series the rules read. Empty reads every model's.").StringVar(&rules.Model)
	rc.Flag("windows", "Comma-separated windows of the PSI, as Prometheus durations.").Default("5m,1h,1d").StringVar(&rules.Windows)
	rc.Flag("output", "Rule file to write, or - for stdout.").Default("-").StringVar(&rules.Output)

	var alerts driftcli.AlertsCommand
	ac := app.Command("alerts", "Print Prometheus alerting rules for the quality thresholds of the models in a configuration file (models[].alerts), and the recording and alerting rules of their SLOs (models[].slos).")
	ac.Flag("config.file", "Exporter configuration file.").Required().StringVar(&alerts.Config)
	ac.Flag("output", "Rule file to write, or - for stdout.").Default("-").StringVar(&alerts.Output)
	ac.Flag("format", "rules (a Prometheus rule file) or prometheusrule (a PrometheusRule for Prometheus Operator).").Default(driftcli.AlertsFormatRules).EnumVar(&alerts.Format, driftcli.AlertsFormatRules, driftcli.AlertsFormatPrometheusRule)
	ac.Flag("name", "With --format=prometheusrule, the PrometheusRule's name.").Default("modelmon-alerts").StringVar(&alerts.Name)
	ac.Flag("namespace", "With --format=prometheusrule, the PrometheusRule's namespace; empty: none (kubectl's).").Default("").StringVar(&alerts.Namespace)

	return map[string]func(*slog.Logger) int{
		ac.FullCommand(): func(l *slog.Logger) int { return alerts.Run(env(l)) },
		pc.FullCommand(): func(l *slog.Logger) int { return profile.Run(env(l)) },
		dc.FullCommand(): func(l *slog.Logger) int { return dr.Run(env(l)) },
		rc.FullCommand(): func(l *slog.Logger) int { return rules.Run(env(l)) },
	}
}

// buildFlags adds the flags that say how to read training data and profile
// it, common to profile and drift; note ends the help of those that only
// apply to raw data.
func buildFlags(cmd *kingpin.CmdClause, b *driftcli.BuildFlags, note string) {
	cmd.Flag("prediction", "Column that holds the model's output, profiled but left out of the dataset's drift verdict. Empty for none.").StringVar(&b.Prediction)
	cmd.Flag("bins", "Number of fine, equal-frequency bins of numeric features."+note).Default("200").IntVar(&b.Bins)
	cmd.Flag("coarse-bins", "Number of coarse bins of numeric features, those of PSI and of the sidecar's bin counters."+note).Default("10").IntVar(&b.CoarseBins)
	cmd.Flag("top-categories", "Number of most frequent categories of a categorical feature that get their own bin; the others share one."+note).Default("20").IntVar(&b.TopCategories)
	cmd.Flag("explained-variance", "Share of the variance of the numeric input features the principal components of the multivariate drift keep."+note).Default("0.65").Float64Var(&b.ExplainedVariance)
	cmd.Flag("no-multivariate", "Leave out the multivariate drift (the PCA reconstruction error)."+note).BoolVar(&b.NoMultivariate)
	cmd.Flag("numeric", "Columns to read as numbers, comma-separated; repeatable."+note).StringsVar(&b.Numeric)
	cmd.Flag("categorical", "Columns to read as categories even if they look like numbers (zip codes), comma-separated; repeatable."+note).StringsVar(&b.Categorical)
}
