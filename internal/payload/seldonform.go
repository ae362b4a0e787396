package payload

import (
	"bytes"
	"io"
	"mime/multipart"
)

// Seldon Core 1's Python wrapper also takes a request as a form
// (Content-Type multipart/form-data), as `curl -F binData=@cat.jpg` sends
// an image: each field is a field of the SeldonMessage, "binData" a file,
// "strData" a text or a file, and every other field the JSON of its value
// (its flask_utils.get_multi_form_data_request). Its feedback API takes
// one alike. The parser reads no Content-Type: a body that is not JSON
// and starts with a multipart delimiter line ("--" and the boundary) is
// tried as such a form.

// maxFormFields bounds the fields of a form read as a SeldonMessage, which
// has a handful: a form of more is no such message.
const maxFormFields = 16

// seldonForm writes into p.form the JSON of the SeldonMessage (or the
// feedback) that body, a Seldon form, stands for, and returns it; false
// when body is no form. "binData" and "strData" are written as empty
// strings: they are opaque, an instance without features, as in their
// JSON form. A file field other than "binData" is a string too, as the
// wrapper reads it; a text field other than "strData" is its JSON, as
// written, and a field that is not JSON fails as the message's JSON does.
func (p *Parser) seldonForm(body []byte) ([]byte, bool) {
	boundary, ok := formBoundary(body)
	if !ok {
		return nil, false
	}
	defer func() { p.lastSize = max(p.lastSize, cap(p.form)) }()
	r := multipart.NewReader(bytes.NewReader(body), string(boundary))
	w := jsonWriter{b: append(p.form[:0], '{')}
	for n := 0; ; n++ {
		part, err := r.NextPart()
		if err == io.EOF && n > 0 {
			break
		}
		if err != nil || n == maxFormFields {
			return nil, false
		}
		name := part.FormName()
		if name == "" {
			return nil, false
		}
		w.key("")
		w.str([]byte(name))
		w.b = append(w.b, ':')
		if name == "binData" || name == "strData" || part.FileName() != "" {
			if _, err := io.Copy(io.Discard, part); err != nil {
				return nil, false
			}
			w.b = append(w.b, `""`...)
			continue
		}
		v, err := io.ReadAll(part)
		if err != nil {
			return nil, false
		}
		w.b = append(w.b, v...)
	}
	w.b = append(w.b, '}')
	p.form = w.b
	return p.form, true
}

// formBoundary returns the boundary of a multipart body: its first line is
// "--" and the boundary (RFC 2046 5.1.1; no preamble, as HTTP clients send
// none), which has 1 to 70 characters.
func formBoundary(body []byte) ([]byte, bool) {
	line, _, ok := bytes.Cut(body, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("--")) {
		return nil, false
	}
	b := bytes.TrimRight(line[2:], " \t\r")
	return b, len(b) > 0 && len(b) <= 70
}
