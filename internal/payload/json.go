package payload

import "github.com/valyala/fastjson"

// jsonRequest parses a plain JSON request: an object of features is one instance, an
// array has one instance per element (objects, or arrays of positional features).
// Nested objects and arrays are flattened into "a.b" and "a.0" names.
func (p *Parser) jsonRequest(root *fastjson.Value, b *Batch) error {
	switch root.Type() {
	case fastjson.TypeObject:
		p.beginRecord(b)
		err := p.flattenObject(b, root.GetObject(), nil)
		p.endRecord(b)
		return err
	case fastjson.TypeArray:
		return p.rows(b, root, "body", nil)
	}
	return reqErr(ReasonTypeMismatch, "body is not an object or array")
}
