package parquetdata

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"

	"github.com/modelmon/modelmon/drift"
)

// A node is a field of the file's schema: a leaf column, a group (a
// struct), a list or a map.
type node struct {
	name     string
	optional bool
	repeated bool
	// def and rep are the definition and repetition levels of the
	// node's values: a value of a column under it with a definition level
	// below def says the node is null (or, repeated, empty), and one with
	// repetition level rep starts another of its elements.
	def, rep int
	leaves   []int // the columns under it, in order
	kind     nodeKind
	children []*node // a group's fields
	// A list's repeated node, and its element: nil when the repeated
	// node is the element (a list of two levels, or the repeated group of
	// a MAP that is not a key and a value, read as a list of them).
	list, elem *node
	// A map's key, a leaf, and its value (the repeated node is list).
	key, value *node

	under    nameCache // the node's name under a prefix
	elements nameCache // the names of its elements or keys
}

type nodeKind int

const (
	leafNode nodeKind = iota
	groupNode
	listNode
	mapNode
)

// maxDepth bounds the nesting of a schema.
const maxDepth = 64

// schemaOf returns the root of the file's schema, whose leaves are the
// file's columns in order: there must be n of them. A group without a
// leaf under it (an empty struct) is left out.
func schemaOf(md *format.FileMetaData, n int) (*node, error) {
	elems, i, col := md.Schema, 0, 0
	var build func(def, rep, depth int) (*node, error)
	build = func(def, rep, depth int) (*node, error) {
		if i >= len(elems) {
			return nil, errors.New("schema cut short")
		}
		if depth > maxDepth {
			return nil, fmt.Errorf("schema nested more than %d deep", maxDepth)
		}
		e := &elems[i]
		i++
		nd := &node{name: e.Name}
		if depth > 0 && e.RepetitionType.Valid {
			nd.optional = e.RepetitionType.V == format.Optional
			nd.repeated = e.RepetitionType.V == format.Repeated
		}
		if nd.optional || nd.repeated {
			def++
		}
		if nd.repeated {
			rep++
		}
		nd.def, nd.rep = def, rep
		children := int(e.NumChildren.V)
		if e.Type.Valid && children <= 0 && depth > 0 {
			nd.kind, nd.leaves = leafNode, []int{col}
			col++
			return nd, nil
		}
		if children < 0 || children > len(elems)-i {
			return nil, fmt.Errorf("group %q of %d fields in a schema of %d", e.Name, children, len(elems))
		}
		nd.kind = groupNode
		for range children {
			c, err := build(def, rep, depth+1)
			if err != nil {
				return nil, err
			}
			if len(c.leaves) > 0 {
				nd.children = append(nd.children, c)
				nd.leaves = append(nd.leaves, c.leaves...)
			}
		}
		nd.annotate(e)
		return nd, nil
	}
	root, err := build(0, 0, 0)
	if err != nil {
		return nil, err
	}
	if i != len(elems) || col != n {
		return nil, fmt.Errorf("schema of %d elements and %d columns read as %d and %d", len(elems), n, i, col)
	}
	return root, nil
}

// annotate makes the group nd, whose schema element is e, a list or a map
// if e says it is one, as the Parquet format's LogicalTypes.md describes
// them, older forms included.
func (nd *node) annotate(e *format.SchemaElement) {
	var isList, isMap bool
	switch e.LogicalType.Value.(type) {
	case *format.ListType:
		isList = true
	case *format.MapType:
		isMap = true
	}
	if ct := e.ConvertedType; ct.Valid {
		isList = isList || ct.V == deprecated.List
		isMap = isMap || ct.V == deprecated.Map || ct.V == deprecated.MapKeyValue
	}
	if !isList && !isMap || nd.repeated || len(nd.children) != 1 || !nd.children[0].repeated {
		return
	}
	r := nd.children[0]
	nd.kind, nd.list = listNode, r
	switch {
	case isMap:
		// A repeated group of a key, a leaf, and a value; else (a key
		// alone, a set) a list of those groups.
		if r.kind == groupNode && len(r.children) == 2 && r.children[0].kind == leafNode && !r.children[0].repeated {
			nd.kind, nd.key, nd.value = mapNode, r.children[0], r.children[1]
		}
	case r.kind == leafNode, len(r.children) > 1, r.name == "array", r.name == nd.name+"_tuple":
		// The repeated node is the element (lists of two levels).
	default:
		nd.elem = r.children[0]
	}
}

// nameCache remembers names made under a prefix, which the same
// prefix asks for again row after row.
type nameCache struct {
	prefix string
	index  []string
	key    map[string]string
}

func (c *nameCache) use(prefix string) {
	if c.prefix != prefix {
		c.prefix, c.index = prefix, c.index[:0]
		clear(c.key)
	}
}

// name returns prefix.name, or name without a prefix.
func (c *nameCache) name(prefix, name string) string {
	if prefix == "" {
		return name
	}
	c.use(prefix)
	if len(c.index) == 0 {
		c.index = append(c.index, prefix+"."+name)
	}
	return c.index[0]
}

// at returns prefix.i.
func (c *nameCache) at(prefix string, i int) string {
	c.use(prefix)
	if i >= drift.MaxColumns {
		return prefix + "." + strconv.Itoa(i)
	}
	for len(c.index) <= i {
		c.index = append(c.index, prefix+"."+strconv.Itoa(len(c.index)))
	}
	return c.index[i]
}

// of returns prefix.key.
func (c *nameCache) of(prefix, key string) string {
	c.use(prefix)
	if s, ok := c.key[key]; ok {
		return s
	}
	s := prefix + "." + key
	if c.key == nil {
		c.key = map[string]string{}
	}
	if len(c.key) < drift.MaxColumns {
		c.key[key] = s
	}
	return s
}

// An assembler turns rows of the file, the values of each leaf column
// with their levels, into records of named values, named as ReadJSONL
// names the values of JSON objects flattened: a group's field is
// group.field, a list's elements list.0, list.1, ..., a map's values
// map.key. A null (a leaf's, a group's, a list's or a map's) is JSON's
// null: a missing value of its name, which drift.Records leaves out beside
// the members or elements other rows have. So a row read here makes the
// columns its JSON object makes, in the same order, and the same values.
type assembler struct {
	root   *node
	leaves []leaf
	recs   *drift.Records
	vals   [][]parquet.Value // by column: the row's values
	pos    []int             // by column: the next value
	err    error
}

// errOutOfStep is a row whose columns' levels do not agree.
var errOutOfStep = errors.New("levels of the columns out of step")

// add adds a row of the file as a record.
func (a *assembler) add(row parquet.Row) error {
	clear(a.vals)
	clear(a.pos)
	for i := 0; i < len(row); {
		c := row[i].Column()
		j := i + 1
		for j < len(row) && row[j].Column() == c {
			j++
		}
		if c < 0 || c >= len(a.vals) || a.vals[c] != nil {
			return errOutOfStep
		}
		a.vals[c] = row[i:j]
		i = j
	}
	for _, c := range a.root.children {
		a.node(c, "")
	}
	if a.err != nil {
		return a.err
	}
	for c := range a.vals {
		if a.pos[c] != len(a.vals[c]) {
			return errOutOfStep
		}
	}
	a.recs.End()
	return nil
}

// cur returns the next value of column c.
func (a *assembler) cur(c int) parquet.Value {
	if a.pos[c] >= len(a.vals[c]) {
		if a.err == nil {
			a.err = errOutOfStep
		}
		return parquet.Value{}
	}
	return a.vals[c][a.pos[c]]
}

func (a *assembler) set(name string, kind drift.Kind, v string) {
	if a.err == nil {
		a.err = a.recs.Set(name, kind, v)
	}
}

// skip passes the one value each column under nd has where nd is null or
// empty.
func (a *assembler) skip(nd *node) {
	for _, c := range nd.leaves {
		a.pos[c]++
	}
}

// node reads the value of nd under prefix.
func (a *assembler) node(nd *node, prefix string) {
	a.named(nd, nd.under.name(prefix, nd.name))
}

// named reads the value of nd, named name.
func (a *assembler) named(nd *node, name string) {
	if nd.repeated { // a repeated field outside a list: a list of its values
		a.elements(nd, nil, name)
		return
	}
	if nd.kind == leafNode {
		a.leaf(nd, name) // a leaf's null is a null value
		return
	}
	if nd.optional && a.cur(nd.leaves[0]).DefinitionLevel() < nd.def {
		// A null: JSON's null, which makes a column of the name, left
		// out beside its members, or elements, that other rows have.
		a.skip(nd)
		a.set(name, "", "")
		return
	}
	a.value(nd, name)
}

func (a *assembler) kind(nd *node) drift.Kind {
	if a.leaves[nd.leaves[0]].numeric {
		return drift.Numeric
	}
	return drift.Categorical
}

// leaf reads the value of the leaf nd, named name.
func (a *assembler) leaf(nd *node, name string) {
	c := nd.leaves[0]
	if a.pos[c] >= len(a.vals[c]) {
		a.cur(c) // out of step
		return
	}
	v := &a.vals[c][a.pos[c]]
	a.pos[c]++
	if v.IsNull() {
		a.set(name, a.kind(nd), "")
	} else {
		a.set(name, a.kind(nd), a.leaves[c].conv(*v))
	}
}

// value reads the value of nd, which is there, named name.
func (a *assembler) value(nd *node, name string) {
	switch nd.kind {
	case leafNode:
		a.leaf(nd, name)
	case groupNode:
		for _, c := range nd.children {
			a.node(c, name)
		}
	case listNode:
		a.elements(nd.list, nd.elem, name)
	case mapNode:
		a.entries(nd, name)
	}
}

// elements reads the elements of the repeated node r: the values of elem,
// or, nil, of r itself.
func (a *assembler) elements(r, elem *node, name string) {
	if a.cur(r.leaves[0]).DefinitionLevel() < r.def {
		a.skip(r) // empty
		return
	}
	for i := 0; a.err == nil; i++ {
		en := r.elements.at(name, i)
		if elem == nil {
			a.value(r, en)
		} else {
			a.named(elem, en)
		}
		if !a.more(r) {
			return
		}
	}
}

// more reports whether the repeated node r has another element.
func (a *assembler) more(r *node) bool {
	c := r.leaves[0]
	return a.pos[c] < len(a.vals[c]) && a.vals[c][a.pos[c]].RepetitionLevel() == r.rep
}

// entries reads the entries of the map nd.
func (a *assembler) entries(nd *node, name string) {
	r := nd.list
	if a.cur(r.leaves[0]).DefinitionLevel() < r.def {
		a.skip(r) // empty
		return
	}
	for a.err == nil {
		c := nd.key.leaves[0]
		k := a.cur(c)
		a.pos[c]++
		key := ""
		if !k.IsNull() {
			key = a.leaves[c].conv(k)
			if x, ok := drift.NonFinite(key); ok { // a float key: "NaN", "+Inf" or "-Inf"
				key = strconv.FormatFloat(x, 'g', -1, 64)
			}
		}
		a.named(nd.value, r.elements.of(name, key))
		if !a.more(r) {
			return
		}
	}
}
