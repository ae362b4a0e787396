package payload

import (
	"strconv"

	"github.com/valyala/fastjson"
)

// kserveRequest parses a KServe v1 / TF-Serving request: "instances" (row format),
// "inputs" (columnar object, or a list in row format) or TF-Serving's classify/regress
// "examples" with optional shared "context".
func (p *Parser) kserveRequest(root *fastjson.Value, b *Batch) error {
	o := root.GetObject()
	if o == nil {
		return reqErr(ReasonTypeMismatch, "body is not an object")
	}
	k := scanTopKeys(o)
	switch {
	case k.instances != nil:
		return p.rows(b, k.instances, "instances", nil)
	case k.inputs != nil:
		return p.tfInputs(b, k.inputs)
	case k.examples != nil:
		if k.context != nil && k.context.Type() != fastjson.TypeObject {
			return reqErr(ReasonTypeMismatch, `"context" is not an object`)
		}
		return p.rows(b, k.examples, "examples", k.context)
	}
	return reqErr(ReasonMissingField, `no "instances" or "inputs"`)
}

// rows parses an array with one instance per element (see Parser.row). Features of
// the object ctx, if not nil, are added to every record. Because they are copies,
// they count against a budget proportional to the body size, beyond which they are
// dropped, so that a large context times many instances cannot exhaust memory.
func (p *Parser) rows(b *Batch, v *fastjson.Value, field string, ctx *fastjson.Value) error {
	if v.Type() != fastjson.TypeArray {
		return reqErr(ReasonTypeMismatch, strconv.Quote(field)+" is not an array")
	}
	a := v.GetArray()
	if len(a) > p.maxInstances {
		return reqErr(ReasonTooManyInstances, strconv.Quote(field)+" has "+strconv.Itoa(len(a))+" instances, more than "+strconv.Itoa(p.maxInstances))
	}
	ctxLeaves := 0
	if ctx != nil {
		ctxLeaves = countLeaves(ctx)
	}
	for _, e := range a {
		p.beginRecord(b)
		if err := p.row(b, e); err != nil {
			return err
		}
		if ctxLeaves > 0 {
			if p.copyBudget < ctxLeaves {
				b.DroppedFeatures += ctxLeaves
			} else {
				p.copyBudget -= ctxLeaves
				if err := p.flattenObject(b, ctx.GetObject(), nil); err != nil {
					return err
				}
			}
		}
		p.endRecord(b)
	}
	return nil
}

// column is one named input of TF-Serving's columnar format.
type column struct {
	name []byte
	v    *fastjson.Value   // the whole value, if it is not an array
	a    []*fastjson.Value // one element per instance, if it is
	arr  bool
}

// tfInputs parses TF-Serving's "inputs": an object of input name → batch (columnar),
// or a single input tensor whose first dimension is the batch (a list, like "instances").
func (p *Parser) tfInputs(b *Batch, v *fastjson.Value) error {
	switch v.Type() {
	case fastjson.TypeArray:
		return p.rows(b, v, "inputs", nil)
	case fastjson.TypeObject:
	default:
		// A single scalar input tensor: one instance.
		p.beginRecord(b)
		err := p.row(b, v)
		p.endRecord(b)
		return err
	}

	n := -1
	var err error
	v.GetObject().Visit(func(key []byte, cv *fastjson.Value) {
		c := column{name: key, v: cv}
		rows := 1
		if cv.Type() == fastjson.TypeArray {
			c.a, c.arr = cv.GetArray(), true
			rows = len(c.a)
		}
		if c.name == nil {
			c.name = []byte{}
		}
		if n < 0 {
			n = rows
		} else if rows != n && err == nil {
			err = reqErr(ReasonShapeMismatch, `"inputs" columns differ in their first dimension`)
		}
		p.cols = append(p.cols, c)
	})
	if err != nil {
		return err
	}
	if n > p.maxInstances {
		return reqErr(ReasonTooManyInstances, `"inputs" has `+strconv.Itoa(n)+" instances, more than "+strconv.Itoa(p.maxInstances))
	}
	for i := 0; i < n; i++ {
		p.beginRecord(b)
		for _, c := range p.cols {
			e := c.v
			if c.arr {
				e = c.a[i]
			}
			if p.full(b) {
				b.DroppedFeatures += countLeaves(e)
				continue
			}
			if err := p.flatten(b, e, c.name); err != nil {
				return err
			}
		}
		p.endRecord(b)
	}
	return nil
}
