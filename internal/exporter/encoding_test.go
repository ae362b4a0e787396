package exporter

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// compress encodes b in coding, as a client or model server would.
func compress(t *testing.T, coding string, b []byte) []byte {
	t.Helper()
	switch coding {
	case "gzip", "x-gzip":
		return fasthttp.AppendGzipBytes(nil, b)
	case "deflate":
		return fasthttp.AppendDeflateBytes(nil, b)
	case "br":
		return fasthttp.AppendBrotliBytes(nil, b)
	case "zstd":
		return fasthttp.AppendZstdBytes(nil, b)
	}
	return b
}

// Compressed bodies (a client that sends gzip, a model server that answers
// in whatever the client accepts) reach the other side as they were sent,
// and the parser reads them decoded. One that can't be decoded is a payload
// error; one over --capture.max-body-size once decoded is not parsed.
func TestProxyCompressedPayloads(t *testing.T) {
	const request, answer = `{"instances":[{"amount":12.5,"age":41}]}`, `{"predictions":[0.25]}`
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		coding := req.header("X-Answer-Coding")
		body := compress(t, coding, []byte(answer))
		switch {
		case strings.Contains(req.start, "/corrupt:"):
			body = []byte("\x1f\x8bnot gzip at all")
		case strings.Contains(req.start, "/bomb:"):
			body = compress(t, coding, []byte(`{"predictions":[1]`+strings.Repeat(" ", 2<<20)+`}`))
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n", coding, len(body))
		c.Write(body)
		return true
	})
	e := startExporter(t, up.URL(), nil)
	send := func(model, reqCoding, respCoding string) []byte {
		t.Helper()
		body := compress(t, reqCoding, []byte(request))
		req, err := http.NewRequest("POST", "http://"+e.ProxyAddr()+"/v1/models/"+model+":predict", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Encoding", reqCoding)
		req.Header.Set("X-Answer-Coding", respCoding)
		req.Header.Set("Accept-Encoding", respCoding) // and Go's client leaves the answer alone
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, body, up.received()[len(up.received())-1].body, "the model server got the request as sent")
		return got
	}

	for _, coding := range []string{"gzip", "x-gzip", "deflate", "br", "zstd", "identity"} {
		model := strings.ReplaceAll(coding, "-", "_")
		got := send(model, coding, coding)
		require.Equal(t, compress(t, coding, []byte(answer)), got, "%s: the client got the answer as sent", coding)
		waitIdle(t, e)
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_payloads_parsed_total", map[string]string{"model": model, "format": "kserve_v1"}), coding)
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": model}), coding)
	}
	// Compressed one way only.
	send("mixed", "gzip", "identity")
	waitIdle(t, e)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_payloads_parsed_total", map[string]string{"model": "mixed", "format": "kserve_v1"}))

	send("corrupt", "identity", "gzip")
	send("unknown", "compress", "identity")
	send("bomb", "identity", "gzip")
	waitIdle(t, e)
	for _, model := range []string{"corrupt", "unknown"} {
		require.Equal(t, 1.0, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": model, "reason": "content_encoding"}), model)
		require.Zero(t, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": model}), model)
	}
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_capture_dropped_total", map[string]string{"model": "bomb", "reason": "body_too_large"}))
	require.Zero(t, metricValue(t, e, "modelmon_predictions_total", map[string]string{"model": "bomb"}))
}

// The push and labels APIs take compressed bodies too, limited to
// --push.max-body-size once decoded.
func TestPushCompressed(t *testing.T) {
	up := modelServer(t)
	e := startExporter(t, up.URL, func(o *Options) { labelsOn(o); o.PushMaxBodySize = 64 << 10 })
	web := "http://" + e.WebAddr()
	ndjson := []string{"Content-Type", "application/x-ndjson"}
	records := []byte(`{"model":"churn","id":"p1","features":{"x":1},"prediction":"yes"}` + "\n" +
		`{"model":"churn","id":"p2","features":{"x":2},"prediction":"no"}`)
	for _, coding := range []string{"gzip", "zstd"} {
		st, body := do(t, "POST", web+"/v1/observations", string(compress(t, coding, records)), append(ndjson, "Content-Encoding", coding)...)
		require.Equal(t, 200, st, body)
		require.Contains(t, body, `"accepted":2`)
	}
	st, body := do(t, "POST", web+"/v1/labels", string(compress(t, "br", []byte(`{"id":"p1","label":"yes"}`))), append(ndjson, "Content-Encoding", "br")...)
	require.Equal(t, 200, st, body)
	require.Contains(t, body, `"accepted":1`)

	for _, tc := range []struct {
		coding string
		body   []byte
		status int
		err    string
	}{
		{"compress", records, 415, `unsupported Content-Encoding \"compress\"`},
		{"gzip", []byte("\x1f\x8bnot gzip"), 400, "couldn't decode the gzip body"},
		{"gzip", compress(t, "gzip", bytes.Repeat([]byte(" "), 1<<20)), 413, "body larger than --push.max-body-size (65536 bytes) once decoded"},
	} {
		for _, path := range []string{"/v1/observations", "/v1/labels"} {
			st, body := do(t, "POST", web+path, string(tc.body), append(ndjson, "Content-Encoding", tc.coding)...)
			require.Equal(t, tc.status, st, "%s %s: %s", path, tc.coding, body)
			require.Contains(t, body, tc.err, path)
		}
	}
}

// A Triton client's request, its tensors in the binary data extension
// (tritonclient's default), is parsed like one with JSON data.
func TestProxyOIPBinaryTensors(t *testing.T) {
	const header = `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`
	var data []byte
	for _, f := range []uint32{0x3fc00000, 0xc0000000, 0x3e800000, 0x41000000} { // 1.5, -2, 0.25, 8
		data = append(data, byte(f), byte(f>>8), byte(f>>16), byte(f>>24))
	}
	const answer = `{"model_name":"triton","outputs":[{"name":"y","shape":[2],"datatype":"BOOL","parameters":{"binary_data_size":2}}]}`
	up := newRawUpstream(t, func(req *rawMessage, c net.Conn) bool {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n%s\x01\x00", len(answer), len(answer)+2, answer)
		return true
	})
	e := startExporter(t, up.URL(), nil)
	st, _ := do(t, "POST", "http://"+e.ProxyAddr()+"/v2/models/triton/infer", header+string(data),
		"Inference-Header-Content-Length", fmt.Sprint(len(header)), "Content-Type", "application/octet-stream")
	require.Equal(t, 200, st)
	waitIdle(t, e)
	triton := map[string]string{"model": "triton"}
	require.Equal(t, 2.0, metricValue(t, e, "modelmon_predictions_total", triton))
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_payloads_parsed_total", map[string]string{"model": "triton", "format": "oip_v2"}))
	require.Zero(t, metricValue(t, e, "modelmon_payload_errors_total", map[string]string{"model": "triton", "reason": "missing_field"}))
}
