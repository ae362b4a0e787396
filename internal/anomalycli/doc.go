// Package anomalycli holds the logic of `alertd anomaly score`: it reads a
// CSV series (timestamp,value), runs one of the anomaly package's detectors
// over it point by point, and writes timestamp,value,anomaly_score, one
// output row per input row in input order. The scoring is strictly causal:
// row i's score depends on rows 0..i only.
package anomalycli
