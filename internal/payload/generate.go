package payload

import (
	"bytes"
	"strconv"

	"github.com/valyala/fastjson"
)

// Generative models (LLMs) answer a prompt with text, whole or as a stream
// of server-sent events:
//
//   - OpenAI-style completions (vLLM, TGI, Ollama, KServe's Hugging Face
//     runtime, llama.cpp): {"choices":[{"message"|"text"|"delta":…,
//     "finish_reason":"stop"}], "usage":…}, streamed as one chunk per event
//     and a closing "data: [DONE]";
//   - the Open Inference Protocol's generate extension (Triton, KServe):
//     {"model_name":…, "text_output":"…"}, streamed as one such object per
//     event;
//   - Hugging Face TGI's own API: {"generated_text":"…", "details":
//     {"finish_reason":…}}, streamed as {"token":…} events;
//   - Ollama's own API (/api/generate, /api/chat): {"response"|"message":…,
//     "done":true, "done_reason":"stop", "prompt_eval_count":…,
//     "eval_count":…}, streamed as one such object per line.
//
// Such an answer is one prediction of the request's single record. Its
// value is why the generation stopped, when the answer says ("stop",
// "length", "content_filter", "tool_calls", TGI's "eos_token"): a class
// with few values, whose shift (more answers cut at "length") tells of a
// changed model or traffic. The text itself is no prediction modelmon counts.

// generation reads o as the whole answer of a generative model. It reports
// false when o is none, so that the caller goes on with its own rules: also
// when o has a field that names a prediction (predictionKeys), or with
// Options.Output, which names the field to read.
func (p *Parser) generation(o *fastjson.Object, b *Batch) bool {
	if p.output != nil || !isGeneration(o) {
		return false
	}
	named := false
	o.Visit(func(k []byte, _ *fastjson.Value) { named = named || predictionKey(k) >= 0 })
	if named {
		return false
	}
	if reason := finishReason(o); len(reason) > 0 && len(b.Records) == 1 {
		b.Records[0].Prediction = Value{Kind: KindString, Str: reason}
	}
	b.Generation = Generation{Answered: true, InputTokens: -1, OutputTokens: -1}
	b.Generation.tokens(o)
	return true
}

// tokens takes the token counts o reports, if any: OpenAI's usage (in a
// stream, the chunk that has it, or each chunk with the running total under
// vLLM's continuous_usage_stats), TGI's details.generated_tokens, Ollama's
// prompt_eval_count and eval_count, Triton's vLLM backend's
// num_input_tokens and num_output_tokens.
func (g *Generation) tokens(o *fastjson.Object) {
	if u := o.Get("usage"); u != nil {
		if n := count(u.Get("prompt_tokens")); n >= 0 {
			g.InputTokens = n
		}
		if n := count(u.Get("completion_tokens")); n >= 0 {
			g.OutputTokens = n
		}
	}
	if d := o.Get("details"); d != nil {
		if n := count(d.Get("generated_tokens")); n >= 0 {
			g.OutputTokens = n
		}
	}
	if n := count(o.Get("prompt_eval_count")); n >= 0 { // Ollama's
		g.InputTokens = n
	}
	if n := count(o.Get("eval_count")); n >= 0 {
		g.OutputTokens = n
	}
	// Triton's vLLM backend (return_num_input_tokens,
	// return_num_output_tokens): the output tokens each piece of a stream
	// adds.
	if n := count(o.Get("num_input_tokens")); n >= 0 {
		g.InputTokens = n
	}
	if n := count(o.Get("num_output_tokens")); n >= 0 {
		g.OutputTokens = max(g.OutputTokens, 0) + n
	}
}

// count returns v as a count of tokens, -1 when it is none.
func count(v *fastjson.Value) int64 {
	if v == nil || v.Type() != fastjson.TypeNumber {
		return -1
	}
	n, ok := tokenCount(v.GetFloat64())
	if !ok {
		return -1
	}
	return n
}

// tokenCount returns f as a count of tokens: a whole number from 0 to 2^53.
func tokenCount(f float64) (int64, bool) {
	if f < 0 || f > 1<<53 || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

// isGeneration reports whether o is an answer, or a streamed piece of one,
// in one of the forms above.
func isGeneration(o *fastjson.Object) bool {
	if v := o.Get("choices"); v != nil {
		return v.Type() == fastjson.TypeArray
	}
	if v := o.Get("token"); v != nil {
		return v.Type() == fastjson.TypeObject // TGI's stream
	}
	if v := o.Get("done"); v != nil && (v.Type() == fastjson.TypeTrue || v.Type() == fastjson.TypeFalse) {
		return o.Get("response") != nil || o.Get("message") != nil // Ollama's
	}
	return o.Get("text_output") != nil || o.Get("generated_text") != nil
}

// finishReason returns why the generation of o stopped, nil when o does not
// say: the finish_reason of its first choice (OpenAI), its own (some OIP
// generate servers), its done_reason (Ollama), or that of its details (TGI).
func finishReason(o *fastjson.Object) []byte {
	if v := o.Get("choices"); v != nil {
		a, _ := v.Array()
		for _, c := range a {
			if i := c.Get("index"); i == nil || i.GetInt() == 0 {
				return stringOrNil(c.Get("finish_reason"))
			}
		}
		return nil
	}
	if r := stringOrNil(o.Get("finish_reason")); len(r) > 0 {
		return r
	}
	if r := stringOrNil(o.Get("done_reason")); len(r) > 0 {
		return r // Ollama's
	}
	if d := o.Get("details"); d != nil {
		return stringOrNil(d.Get("finish_reason"))
	}
	return nil
}

func stringOrNil(v *fastjson.Value) []byte {
	if v == nil || v.Type() != fastjson.TypeString {
		return nil
	}
	return v.GetStringBytes()
}

// isEventStream reports whether resp is a stream of server-sent events
// (text/event-stream) rather than JSON: its first line is a field of the
// event-stream format or a comment. No JSON document starts so.
func isEventStream(resp []byte) bool {
	resp = bytes.TrimLeft(resp, " \t\r\n")
	if len(resp) > 0 && resp[0] == ':' {
		return true
	}
	for _, field := range [...]string{"data", "event", "id", "retry"} {
		if len(resp) > len(field) && string(resp[:len(field)]) == field && (resp[len(field)] == ':' || resp[len(field)] == '\n' || resp[len(field)] == '\r') {
			return true
		}
	}
	return false
}

// eventStream reads a generative model's streamed answer: the data of each
// event is a JSON piece of the answer (the forms above), except OpenAI's
// closing "[DONE]". The last finish reason a piece gives is the prediction.
// An event that is not JSON, or a piece that reports an error, fails the
// response; so does a stream with no piece at all.
func (p *Parser) eventStream(resp []byte, b *Batch) error {
	return p.pieces(resp, b, p.nextEvent, "server-sent event")
}

// jsonLines reads an answer streamed as JSON lines (Ollama's own API) as
// eventStream reads events. It reports false, and reads nothing, when the
// first line is not such a piece: then resp is just not JSON.
func (p *Parser) jsonLines(resp []byte, b *Batch) (lines bool, err error) {
	first, _, _ := nextLine(resp)
	v, ok := p.parseJSON(&p.resp, first)
	if !ok || v.GetObject() == nil || !isGeneration(v.GetObject()) {
		return false, nil
	}
	return true, p.pieces(resp, b, nextLine, "line")
}

// nextLine is the next non-blank line of s.
func nextLine(s []byte) (line, rest []byte, ok bool) {
	for len(s) > 0 {
		line, s, _ = bytes.Cut(s, []byte("\n"))
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return line, s, true
		}
	}
	return nil, nil, false
}

// pieces reads the pieces of a streamed answer, each the data next returns.
func (p *Parser) pieces(resp []byte, b *Batch, next func([]byte) ([]byte, []byte, bool), what string) error {
	p.finish = p.finish[:0]
	found := false
	pieces := 0
	g := Generation{Answered: true, InputTokens: -1, OutputTokens: -1}
	for n := 1; len(resp) > 0; n++ {
		var data []byte
		var ok bool
		data, resp, ok = next(resp)
		if !ok || bytes.Equal(data, []byte("[DONE]")) {
			continue
		}
		v, valid := p.parseJSON(&p.resp, data)
		if !valid {
			return respErr(ReasonInvalidResponse, what+" "+strconv.Itoa(n)+": not valid JSON")
		}
		o := v.GetObject()
		if o == nil || hasErrorKey(o) || string(v.GetStringBytes("object")) == "error" {
			return respErr(ReasonInvalidResponse, what+" "+strconv.Itoa(n)+": the model server reported an error")
		}
		g.tokens(o) // also from a closing chunk with usage and no choices
		if !isGeneration(o) {
			continue
		}
		pieces++
		if r := finishReason(o); len(r) > 0 {
			p.finish = append(p.finish[:0], r...)
			found = true
		}
	}
	if pieces == 0 {
		return respErr(ReasonInvalidResponse, "no "+what+" carries a piece of a generated answer")
	}
	if found && len(b.Records) == 1 {
		b.Records[0].Prediction = Value{Kind: KindString, Str: p.finish}
	}
	b.Generation = g
	return nil
}

// nextEvent reads the next event of an event stream (the WHATWG HTML
// standard's format): lines up to a blank line, of which the "data" fields'
// values, after one optional space, are joined by newlines. Other fields and
// comments are skipped. ok is false for an event without data. Lines end in
// \n, \r\n or \r.
func (p *Parser) nextEvent(s []byte) (data, rest []byte, ok bool) {
	started, joined := false, false
	for len(s) > 0 {
		var line []byte
		i := bytes.IndexAny(s, "\r\n")
		if i < 0 {
			line, s = s, nil
		} else {
			line = s[:i]
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			s = s[i+1:]
		}
		if len(line) == 0 {
			if started {
				break
			}
			continue
		}
		started = true
		name, value, _ := bytes.Cut(line, []byte(":"))
		if string(name) != "data" {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		switch {
		case !ok:
			data, ok = value, true
		case !joined:
			// A second data line: join them in the Parser's buffer.
			p.sse = append(append(append(p.sse[:0], data...), '\n'), value...)
			data, joined = p.sse, true
		default:
			p.sse = append(append(p.sse, '\n'), value...)
			data = p.sse
		}
	}
	return data, s, ok
}
