// Package driftref loads a drift reference from a file as the sidecar takes
// it, from --drift.reference or models[].drift.reference: a profile, or
// training data profiled with drift's default options. `exporter drift`
// loads a model's configured reference with it too, so that it decides on
// the profile the sidecar decides on.
package driftref

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/modelmon/modelmon/drift"
	"github.com/modelmon/modelmon/internal/parquetdata"
)

// Load reads a reference profile (.json) or profiles training data (.csv,
// .jsonl, .ndjson, .parquet), whose column prediction, if not empty, holds
// the model's output. It returns the training data's columns too, nil for a
// profile.
func Load(path, prediction string) (*drift.Profile, []drift.Column, error) {
	return LoadDefault(path, prediction, "")
}

// LoadDefault is Load, but training data without a prediction column
// named (prediction empty) have theirs in column fallback when they have
// that column: fallback is --drift.prediction-column, the default of a
// model's models[].drift.prediction_column, as a Prometheus global
// setting is a job's default. Data without that column have none.
func LoadDefault(path, prediction, fallback string) (*drift.Profile, []drift.Column, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".json" {
		p, err := drift.LoadFile(path)
		return p, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var cols []drift.Column
	name := filepath.Base(path)
	switch ext {
	case ".csv":
		cols, err = drift.ReadCSV(name, f, drift.ReadOptions{})
	case ".jsonl", ".ndjson":
		cols, err = drift.ReadJSONL(name, f, drift.ReadOptions{})
	case ".parquet":
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			cols, err = parquetdata.Read(name, f, fi.Size(), drift.ReadOptions{})
		}
	default:
		return nil, nil, fmt.Errorf("unknown reference format %q: want .json (a profile), .csv, .jsonl or .parquet", ext)
	}
	if err != nil {
		return nil, nil, err
	}
	if prediction == "" && fallback != "" && slices.ContainsFunc(cols, func(c drift.Column) bool { return c.Name == fallback }) {
		prediction = fallback
	}
	opts := drift.DefaultBuildOptions()
	opts.Prediction = prediction
	p, err := drift.BuildProfile(cols, opts)
	if err != nil {
		return nil, nil, err
	}
	return p, cols, nil
}
