package payload

import (
	"fmt"
	"strings"
	"testing"
)

var (
	kserveBenchReq, kserveBenchResp = kserveBenchBodies()
	oipBenchReq, oipBenchResp       = oipBenchBodies()
)

// kserveBenchBodies is a KServe v1 request with one instance of 20 named features
// (numbers, strings, a bool, a null) and its response.
func kserveBenchBodies() (req, resp []byte) {
	var sb strings.Builder
	sb.WriteString(`{"instances": [{`)
	for i := range 20 {
		if i > 0 {
			sb.WriteString(", ")
		}
		switch i % 5 {
		case 0:
			fmt.Fprintf(&sb, `"category_%d": "value-%d"`, i, i)
		case 1:
			fmt.Fprintf(&sb, `"flag_%d": true`, i)
		case 2:
			fmt.Fprintf(&sb, `"count_%d": %d`, i, i*37)
		default:
			fmt.Fprintf(&sb, `"amount_%d": %.4f`, i, float64(i)*1.618)
		}
	}
	sb.WriteString(`}]}`)
	return []byte(sb.String()), []byte(`{"predictions": [{"label": "fraud", "probabilities": [0.13, 0.87]}]}`)
}

// oipBenchBodies is an OIP request with one FP32 input of shape [8, 20] and its response.
func oipBenchBodies() (req, resp []byte) {
	var sb strings.Builder
	sb.WriteString(`{"id": "bench", "inputs": [{"name": "input-0", "shape": [8, 20], "datatype": "FP32", "data": [`)
	for i := range 8 * 20 {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%.3f", float64(i)*0.731)
	}
	sb.WriteString(`]}]}`)
	resp = []byte(`{"model_name": "m", "model_version": "1", "id": "bench", "outputs": [` +
		`{"name": "label", "shape": [8], "datatype": "INT64", "data": [0, 1, 1, 0, 1, 0, 0, 1]},` +
		`{"name": "probabilities", "shape": [8, 2], "datatype": "FP32", "data": [0.9, 0.1, 0.2, 0.8, 0.3, 0.7, 0.6, 0.4, 0.1, 0.9, 0.8, 0.2, 0.7, 0.3, 0.4, 0.6]}]}`)
	return []byte(sb.String()), resp
}

// grpcBenchTensors are the tensors of the gRPC benchmarks: an input "x"
// of 20 FP32 features, and an output "y" of one.
func grpcBenchTensors() (in, out pbTensor) {
	var data []any
	for i := range 20 {
		data = append(data, float64(i)+0.5)
	}
	return pbTensor{name: "x", dt: "FP32", shape: []int64{1, 20}, data: data},
		pbTensor{name: "y", dt: "FP32", shape: []int64{1}, data: []any{0.5}}
}

func benchmarkParse(b *testing.B, f Format, req, resp []byte) {
	p := NewParser(Options{})
	var batch Batch
	if err := p.Parse(f, req, resp, &batch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(req) + len(resp)))
	for b.Loop() {
		if err := p.Parse(f, req, resp, &batch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKServeV1(b *testing.B) {
	benchmarkParse(b, FormatKServeV1, kserveBenchReq, kserveBenchResp)
}

func BenchmarkKServeV1Detect(b *testing.B) {
	benchmarkParse(b, FormatUnknown, kserveBenchReq, kserveBenchResp)
}

func BenchmarkOIP(b *testing.B) {
	benchmarkParse(b, FormatOIP, oipBenchReq, oipBenchResp)
}

func BenchmarkMLflowSplit(b *testing.B) {
	req := []byte(`{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3, "x"], [5, 6, 7, "y"], [9, 10, 11, "z"]]}}`)
	benchmarkParse(b, FormatMLflow, req, []byte(`{"predictions": [0.1, 0.2, 0.3]}`))
}

func BenchmarkJSONNested(b *testing.B) {
	req := []byte(`{"user": {"age": 42, "country": "NO", "segment": {"tier": "gold", "years": 3}}, "cart": [12.5, 3.99, 7], "device": "ios"}`)
	benchmarkParse(b, FormatJSON, req, []byte(`{"prediction": 0.73}`))
}
