// Package drift detects data drift of a model's inputs and outputs against a
// reference profile built from its training data, in bounded memory, as values
// stream through the sidecar. It is a pure library: no network, no logging, no
// goroutines, no wall clock (time is passed in).
//
// # Flow
//
// Offline, ReadCSV or ReadJSONL reads the training data and BuildProfile turns it
// into a Profile: per numeric feature, equal-frequency bin edges frozen from the
// reference (fine bins for KS and Wasserstein, coarse deciles for PSI, JS,
// Hellinger, χ² and the Prometheus bin counters) with the reference counts; per
// categorical feature, the top categories and an other bin; plus count, mean, std,
// range and missing rate. Profile.Save writes it as JSON and Load reads it back.
//
// Live, a Window per feature counts each value into its fine bin in every span (5m,
// 1h, 1d by default) through rotating sub-windows (Window.Add: about 17 ns, no
// allocation), and keeps cumulative coarse-bin counts for Prometheus counters
// (Window.Totals). Add also returns the value's Violation of the reference's
// constraints (missing, nan, inf, out_of_range, unseen_category). At scrape time
// Window.Counts gives a span's counts, which replicas' windows can Merge, and
// Detector.Score compares them with the reference: every applicable statistic,
// and a decision with its reason. Detector.Dataset aggregates features.
//
// # Statistics
//
// PSI, JS (Jensen–Shannon distance), Hellinger, KS, Wasserstein, ChiSquare, ZTest
// and MissingRate work on bin counts, so they run on streaming state; KSExact and
// WassersteinExact work on raw samples. Each documents its formula, default
// threshold and literature.
//
// # Decisions
//
// The method that decides drift for a feature follows Evidently (Choose): with at
// most 1000 reference values, KS (p < α) for numeric features and χ² or Z for
// categorical ones; with more, Wasserstein normed by the reference std for numeric
// features and Jensen–Shannon for categorical ones. Options.Methods overrides it.
// By default every threshold is calibrated (Calibrator) so that, when the data do
// come from the reference distribution, at most a share α (0.05) of windows is
// flagged, whatever the method and the window's size; Options.Fixed uses
// Evidently's fixed thresholds instead, whose false-alarm rate depends on n. The
// dataset drifts when at least half of the ready features drift
// (Detector.Dataset, Evidently's rule). The model drifts when any feature's
// p-value is below a threshold corrected for testing every feature at once
// (Detector.Model, Alibi Detect's rule: Correction, Bonferroni by default, or
// Benjamini–Hochberg's false discovery rate).
//
// # Profile format
//
// A profile is JSON with a version (only 1 is accepted; Load rejects others with
// "profile version 2 is not supported (want 1)") and one object per feature:
//
//	{
//	  "version": 1,
//	  "features": [
//	    {
//	      "name": "age",
//	      "type": "numeric",
//	      "count": 6,
//	      "missing": 1,
//	      "unique": 4,
//	      "numeric": {
//	        "mean": 35.333333333333336,
//	        "std": 12.119772641798562,
//	        "min": 25,
//	        "max": 60,
//	        "edges": [25, 25.000000000000004, 31, 31.000000000000004, 40, 40.00000000000001, 60, 60.00000000000001],
//	        "counts": [0, 2, 0, 2, 0, 1, 0, 1, 0],
//	        "coarse_edges": [25, 25.000000000000004, 31.000000000000004, 40.00000000000001, 60.00000000000001],
//	        "tail_means": [25, 60]
//	      }
//	    },
//	    {
//	      "name": "city",
//	      "type": "categorical",
//	      "count": 7,
//	      "missing": 0,
//	      "unique": 3,
//	      "categorical": {
//	        "categories": [{"value": "paris", "count": 4}, {"value": "oslo", "count": 2}],
//	        "other": 1,
//	        "rare": ["lima"],
//	        "closed": true
//	      }
//	    },
//	    {
//	      "name": "__prediction__",
//	      "type": "categorical",
//	      "prediction": true,
//	      "count": 7,
//	      "missing": 0,
//	      "unique": 2,
//	      "categorical": {"categories": [{"value": "no", "count": 5}, {"value": "yes", "count": 2}], "other": 0, "closed": true}
//	    }
//	  ]
//	}
//
// Fine bin i of a numeric feature is [edges[i-1], edges[i]), bin 0 is below edges[0]
// = min and the last bin is at or above the last edge, the float64 right after max;
// so counts has one more value than edges and starts and ends with 0. A bin whose
// upper edge is the float64 right after its lower edge holds that single value:
// "age" above has only four distinct values, so each has its own bin, and a coarse
// bin each. Coarse bins are cut by coarse_edges, a subset of edges. tail_means are
// the means of the reference values in the first and last in-range bins. A
// categorical feature's bins are its categories then the other bin; rare lists the
// other categories of the reference when closed (all categories known), so that
// any other value is unseen; a category named "__other__", the other bin's label,
// is always one of the other categories. Shares are the counts over count; missing
// counts the empty and null values (in CSV, those IsCSVMissing reports), NaN and
// ±Inf. The prediction column is one more feature, marked "prediction".
package drift
