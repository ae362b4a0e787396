package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/modelmon/modelmon/examples/internal/fraud"
)

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and backslash \`, "new\nline\ttab\rreturn", "\x00\x1f\x7f",
		"héllo, 世界", "bad \xff utf-8 \xe2\x82", "</script>&",
	} {
		var got string
		require.NoError(t, json.Unmarshal(appendString(nil, s), &got), "%q", s)
		want, err := json.Marshal(s)
		require.NoError(t, err)
		var wantString string
		require.NoError(t, json.Unmarshal(want, &wantString))
		require.Equal(t, wantString, got, "%q", s)
	}
}

func TestParseError(t *testing.T) {
	s, err := newServer(options{ModelName: "fraud", ModelVersion: "v1"})
	require.NoError(t, err)
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	for body, want := range map[string]string{
		`{"instances":[{"amount":}]}`: `cannot parse number: unexpected char: "}"`,
		`{"instances":[`:              "cannot parse array: missing ']'",
		``:                            "cannot parse empty string",
		`{"a":1}x`:                    `unexpected tail: "x"`,
	} {
		_, err = p.Parse(body)
		require.Error(t, err)
		require.Equal(t, want, parseError(err), body)
	}
}

// kserveBody is the benchmark request: one instance with all 20 features.
func kserveBody() []byte {
	var b strings.Builder
	b.WriteString(`{"instances":[{`)
	for i, f := range fraud.Features {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(f.Name) + ":" + strconv.FormatFloat(f.Mean, 'f', -1, 64))
	}
	b.WriteString(`}]}`)
	return []byte(b.String())
}

func TestKServeBody(t *testing.T) {
	var req struct {
		Instances []map[string]float64 `json:"instances"`
	}
	require.NoError(t, json.Unmarshal(kserveBody(), &req))
	require.Len(t, req.Instances, 1)
	require.Len(t, req.Instances[0], fraud.NumFeatures)
}

// BenchmarkPredict measures the server's own cost for the proxy benchmark's
// request, without the network.
func BenchmarkPredict(b *testing.B) {
	for _, protocol := range []struct{ name, path, body string }{
		{"kserve", "/v1/models/fraud:predict", string(kserveBody())},
		{"oip", "/v2/models/fraud/infer", `{"id":"1","inputs":[{"name":"t","shape":[1,20],"datatype":"FP64","data":[120,42,40,3,110,25,13,0,1,0.2,300,0,0,2500,5000,0.3,1,0.1,1200,0]}]}`},
		{"mlflow", "/invocations", `{"dataframe_split":{"columns":["amount","age","tenure_months"],"data":[[120,42,40]]}}`},
	} {
		b.Run(protocol.name, func(b *testing.B) {
			s, err := newServer(options{ModelName: "fraud", ModelVersion: "v1"})
			require.NoError(b, err)
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(fasthttp.MethodPost)
			ctx.Request.SetRequestURI(protocol.path)
			ctx.Request.SetBodyString(protocol.body)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				s.handle(&ctx)
			}
			require.Equal(b, fasthttp.StatusOK, ctx.Response.StatusCode(), string(ctx.Response.Body()))
		})
	}
}
