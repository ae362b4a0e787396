package payload

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The answers below are as vLLM's OpenAI server, Triton's generate extension
// and Hugging Face TGI send them (field order and the fields that do not
// matter here trimmed).
const (
	chatRequest   = `{"model": "llama-3-8b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16, "temperature": 0.7}`
	generateInput = `{"text_input": "Hi", "parameters": {"max_tokens": 16}}`
	tgiInput      = `{"inputs": "Hi", "parameters": {"max_new_tokens": 16}}`
	chatAnswer    = `{"id": "chatcmpl-1", "object": "chat.completion", "created": 1732600000, "model": "llama-3-8b", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "logprobs": null, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}`
)

var tgiFeatures = []string{`inputs="Hi"`, "parameters.max_new_tokens=16"}

var chatFeatures = []string{`model="llama-3-8b"`, `messages.0.role="user"`, `messages.0.content="Hi"`, "max_tokens=16", "temperature=0.7"}

// sse joins the data of events into an event stream, as servers send it.
func sse(sep string, data ...string) string {
	var b strings.Builder
	for _, d := range data {
		b.WriteString("data: " + d + sep + sep)
	}
	return b.String()
}

func TestGeneration(t *testing.T) {
	chunk := func(delta, finish string) string {
		return `{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "llama-3-8b", "choices": [{"index": 0, "delta": ` + delta + `, "finish_reason": ` + finish + `}]}`
	}
	chatStream := []string{
		chunk(`{"role": "assistant", "content": ""}`, "null"),
		chunk(`{"content": "Hel"}`, "null"),
		chunk(`{"content": "lo!"}`, "null"),
		chunk(`{}`, `"length"`),
		// stream_options.include_usage: a last chunk with no choices.
		`{"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}`,
		"[DONE]",
	}
	runParseCases(t, []parseCase{
		{name: "openai chat", req: chatRequest, resp: chatAnswer, wantFormat: FormatJSON,
			want: []plainRecord{rec(`"stop"`, "", chatFeatures...)}},
		{name: "openai completion", req: `{"model": "m", "prompt": "Hi", "max_tokens": 1}`,
			resp: `{"object": "text_completion", "choices": [{"text": " there", "index": 0, "logprobs": null, "finish_reason": "length"}]}`,
			want: []plainRecord{rec(`"length"`, "", `model="m"`, `prompt="Hi"`, "max_tokens=1")}},
		{name: "the first choice counts", req: `{"prompt": "Hi", "n": 2}`,
			resp: `{"choices": [{"index": 1, "text": "a", "finish_reason": "length"}, {"index": 0, "text": "b", "finish_reason": "stop"}]}`,
			want: []plainRecord{rec(`"stop"`, "", `prompt="Hi"`, "n=2")}},
		{name: "a tool call", req: chatRequest,
			resp: `{"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}, "finish_reason": "tool_calls"}]}`,
			want: []plainRecord{rec(`"tool_calls"`, "", chatFeatures...)}},
		{name: "oip generate", req: generateInput, resp: `{"model_name": "llama", "model_version": "1", "text_output": "Hello!"}`,
			want: []plainRecord{rec("null", "", `text_input="Hi"`, "parameters.max_tokens=16")}},
		{name: "tgi generate", req: tgiInput, resp: `{"generated_text": "Hello!", "details": {"finish_reason": "eos_token", "generated_tokens": 3}}`,
			want: []plainRecord{rec(`"eos_token"`, "", tgiFeatures...)}},
		{name: "openai chat streamed", req: chatRequest, resp: sse("\n", chatStream...),
			want: []plainRecord{rec(`"length"`, "", chatFeatures...)}},
		{name: "streamed with CRLF, ids, event names, comments and retry", req: chatRequest,
			resp: ": keep-alive\r\n\r\nretry: 3000\r\nid: 1\r\nevent: message\r\ndata: " + chunk(`{"content": "a"}`, "null") + "\r\n\r\n" +
				": ping\r\n\r\nid: 2\r\ndata: " + chunk(`{}`, `"stop"`) + "\r\n\r\ndata: [DONE]\r\n\r\n",
			want: []plainRecord{rec(`"stop"`, "", chatFeatures...)}},
		{name: "data over several lines", req: chatRequest,
			resp: "data: {\"choices\": [{\"index\": 0,\ndata: \"delta\": {},\ndata:\"finish_reason\": \"stop\"}]}\n\n",
			want: []plainRecord{rec(`"stop"`, "", chatFeatures...)}},
		{name: "CR line ends and no closing blank line", req: chatRequest,
			resp: "data: " + chunk(`{}`, `"stop"`) + "\r",
			want: []plainRecord{rec(`"stop"`, "", chatFeatures...)}},
		{name: "oip generate_stream", req: generateInput,
			resp: sse("\n", `{"model_name": "llama", "model_version": "1", "text_output": "Hel"}`, `{"model_name": "llama", "model_version": "1", "text_output": "lo!"}`),
			want: []plainRecord{rec("null", "", `text_input="Hi"`, "parameters.max_tokens=16")}},
		{name: "tgi generate_stream", req: tgiInput,
			resp: sse("\n", `{"index": 1, "token": {"id": 9906, "text": "Hello", "logprob": -0.1, "special": false}, "generated_text": null, "details": null}`,
				`{"index": 2, "token": {"id": 0, "text": "", "special": true}, "generated_text": "Hello", "details": {"finish_reason": "eos_token"}}`),
			want: []plainRecord{rec(`"eos_token"`, "", tgiFeatures...)}},

		{name: "ollama generate streamed", req: `{"model": "llama3", "prompt": "Hi"}`,
			resp: `{"model":"llama3","created_at":"2026-11-26T21:00:00Z","response":"Hel","done":false}` + "\n" +
				`{"model":"llama3","created_at":"2026-11-26T21:00:00Z","response":"lo","done":false}` + "\n" +
				`{"model":"llama3","response":"","done":true,"done_reason":"length","prompt_eval_count":26,"eval_count":2}` + "\n",
			want: []plainRecord{rec(`"length"`, "", `model="llama3"`, `prompt="Hi"`)}},
		{name: "ollama chat whole", req: `{"model": "llama3", "messages": [{"role": "user", "content": "Hi"}], "stream": false}`,
			resp: `{"model":"llama3","message":{"role":"assistant","content":"Hello"},"done":true,"done_reason":"stop","eval_count":2}`,
			want: []plainRecord{rec(`"stop"`, "", `model="llama3"`, `messages.0.role="user"`, `messages.0.content="Hi"`, "stream=false")}},

		// Failures.
		{name: "an ollama stream that ends in an error", req: `{"prompt": "Hi"}`,
			resp:   `{"response":"a","done":false}` + "\n" + `{"error":"model unloaded"}` + "\n",
			reason: ReasonInvalidResponse, want: []plainRecord{rec("null", "", `prompt="Hi"`)}},
		{name: "lines that are no generation are no JSON", format: FormatJSON, req: `{"x": 1}`, resp: "{\"a\": 1}\n{\"a\": 2}\n",
			reason: ReasonInvalidResponse, want: []plainRecord{rec("null", "", "x=1")}},
		{name: "an error event", req: chatRequest, resp: sse("\n", chunk(`{"content": "a"}`, "null"), `{"error": {"message": "overloaded"}}`),
			reason: ReasonInvalidResponse, want: []plainRecord{rec("null", "", chatFeatures...)}},
		{name: "vllm's error object", req: chatRequest, resp: sse("\n", `{"object": "error", "message": "too long", "code": 400}`),
			reason: ReasonInvalidResponse, want: []plainRecord{rec("null", "", chatFeatures...)}},
		{name: "an event that is not JSON", req: chatRequest, resp: sse("\n", chunk(`{}`, `"stop"`), `{"choices": [`),
			reason: ReasonInvalidResponse, want: []plainRecord{rec("null", "", chatFeatures...)}},
		{name: "no piece of an answer", req: chatRequest, resp: ": ping\n\nevent: x\ndata: {\"hello\": 1}\n\ndata: [DONE]\n\n",
			reason: ReasonInvalidResponse, want: []plainRecord{rec("null", "", chatFeatures...)}},
		{name: "a string token is no stream", format: FormatJSON, req: `{"x": 1}`, resp: `{"token": "abc"}`,
			want: []plainRecord{rec(`"abc"`, "", "x=1")}},
		{name: "an object without choices is no generation", format: FormatJSON, req: `{"x": 1}`, resp: `{"choices": 3}`,
			want: []plainRecord{rec("3", "", "x=1")}},
		{name: "an object with a prediction is no generation", format: FormatJSON, req: `{"x": 1}`, resp: `{"prediction": 1, "choices": []}`,
			want: []plainRecord{rec("1", "", "x=1")}},
	})
}

func TestIsEventStream(t *testing.T) {
	for s, want := range map[string]bool{
		"data: {}\n\n": true, "\n\ndata:x": true, ": comment\n": true, "event: a\n": true, "id: 1\n": true,
		"retry: 10\n": true, "data\n": true, `{"data": 1}`: false, "dataset": false, `[1]`: false, "": false, "identity: 1": false,
	} {
		require.Equal(t, want, isEventStream([]byte(s)), "%q", s)
	}
}

func TestNextEvent(t *testing.T) {
	p := NewParser(Options{})
	var got []string
	s := []byte("data: a\ndata:b\n\n\n\n: c\n\ndata\n\nevent: x\ndata:  d\r\n\r\ndata: e")
	for len(s) > 0 {
		var data []byte
		var ok bool
		data, s, ok = p.nextEvent(s)
		if ok {
			got = append(got, string(data))
		}
	}
	// An empty "data" field gives an event with empty data; only one space goes.
	require.Equal(t, []string{"a\nb", "", " d", "e"}, got)
}

func BenchmarkEventStream(b *testing.B) {
	var chunks []string
	for i := 0; i < 200; i++ {
		chunks = append(chunks, `{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1732600000, "model": "llama-3-8b", "choices": [{"index": 0, "delta": {"content": " word"}, "logprobs": null, "finish_reason": null}]}`)
	}
	chunks = append(chunks, `{"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}`, "[DONE]")
	req, resp := []byte(chatRequest), []byte(sse("\n", chunks...))
	p := NewParser(Options{})
	var batch Batch
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Parse(FormatUnknown, req, resp, &batch); err != nil {
			b.Fatal(err)
		}
	}
}

// The token counts an answer reports, whole or streamed; -1 where it says none.
func TestGenerationTokens(t *testing.T) {
	running := func(out int) string {
		return `{"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": null}], "usage": {"prompt_tokens": 9, "completion_tokens": ` + strconv.Itoa(out) + `, "total_tokens": 0}}`
	}
	for _, tc := range []struct {
		name      string
		req, resp string
		want      Generation
	}{
		{"openai", chatRequest, chatAnswer, Generation{true, 9, 3}},
		{"openai without usage", chatRequest, `{"choices": [{"index": 0, "message": {}, "finish_reason": "stop"}]}`, Generation{true, -1, -1}},
		{"streamed with include_usage", chatRequest, sse("\n",
			`{"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]}`,
			`{"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}`, "[DONE]"), Generation{true, 9, 1}},
		{"streamed with vLLM's running totals", chatRequest, sse("\n", running(1), running(2), running(3), "[DONE]"), Generation{true, 9, 3}},
		{"tgi", tgiInput, `{"generated_text": "a", "details": {"finish_reason": "length", "generated_tokens": 16}}`, Generation{true, -1, 16}},
		{"tgi streamed", tgiInput, sse("\n", `{"token": {"id": 1, "text": "a"}, "details": null}`,
			`{"token": {"id": 2, "text": "b"}, "generated_text": "ab", "details": {"finish_reason": "length", "generated_tokens": 2}}`), Generation{true, -1, 2}},
		{"oip generate", generateInput, `{"text_output": "a"}`, Generation{true, -1, -1}},
		{"oip generate from Triton's vLLM backend", generateInput, `{"text_output": "ab", "finish_reason": "stop", "num_input_tokens": 4, "num_output_tokens": 2}`, Generation{true, 4, 2}},
		{"oip generate_stream from Triton's vLLM backend: the pieces add up", generateInput, sse("\n",
			`{"text_output": "a", "num_output_tokens": 1}`, `{"text_output": "bc", "num_output_tokens": 2}`,
			`{"text_output": "", "finish_reason": "length", "num_output_tokens": 0}`), Generation{true, -1, 3}},
		{"ollama streamed", `{"prompt": "Hi"}`, `{"response": "a", "done": false}` + "\n" +
			`{"response": "", "done": true, "done_reason": "stop", "prompt_eval_count": 26, "eval_count": 298}`, Generation{true, 26, 298}},
		{"a count that is not one", chatRequest, `{"choices": [], "usage": {"prompt_tokens": -1, "completion_tokens": 1.5}}`, Generation{true, -1, -1}},
		{"no generation", `{"x": 1}`, `{"prediction": 1, "usage": {"prompt_tokens": 9}}`, Generation{}},
		{"a stream that fails", chatRequest, sse("\n", running(1), `{"error": "x"}`), Generation{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParser(Options{})
			var b Batch
			_ = p.Parse(FormatUnknown, []byte(tc.req), []byte(tc.resp), &b)
			require.Equal(t, tc.want, b.Generation)
			b.Reset()
			require.Equal(t, Generation{}, b.Generation)
		})
	}
}
