package drift

import (
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// category returns the bin of category s, and whether the reference has s.
func (f *Feature) category(s string) (int, bool) {
	i, ok := f.catIndex[s]
	if !ok && !utf8.ValidString(s) {
		i, ok = f.catIndex[strings.ToValidUTF8(s, "\uFFFD")]
	}
	return i, ok
}

// bin returns the fine bin of a finite v: the number of edges ≤ v.
func (f *Feature) bin(v float64) int {
	return f.guide.find(v)
}

// guide is a lookup table in front of the search over the edges. The range [lo,
// hi) between two inner edges is cut into cells of equal width, about as wide as
// the narrowest tenth of the bins there, so that most cells hold at most one edge.
// A value v falls in cell c(v) = int((v-lo)·scale), and so does each edge; since
// subtraction, multiplication by a positive number and truncation are all monotone
// in floating point, every edge of a lower cell is < v and every edge of a higher
// cell is > v. So the answer is first[c] (the number of edges in lower cells) plus
// the number of the edges of cell c that are ≤ v: with at most four edges in the
// cell, four independent comparisons (the edges are padded with +Inf) instead of
// a chain of eight dependent ones. Cells with more edges (a heavy-tailed center),
// and values outside [lo, hi) (a few percent), use the binary search.
type guide struct {
	edges         []float64 // with 4 +Inf after the last edge
	lo, hi, scale float64
	first         []uint16
}

func newGuide(edges []float64) guide {
	n := len(edges)
	g := guide{edges: append(slices.Clip(edges), math.Inf(1), math.Inf(1), math.Inf(1), math.Inf(1))}
	a, b := n/64, n-1-n/64
	if n < 16 || n > math.MaxUint16 || edges[b] <= edges[a] {
		return g
	}
	var widths []float64
	for i := a + 1; i <= b; i++ {
		if w := edges[i] - edges[i-1]; w > 1e-9*math.Max(math.Abs(edges[i]), 1) { // not a single value's bin
			widths = append(widths, w)
		}
	}
	if len(widths) == 0 {
		return g
	}
	slices.Sort(widths)
	span := edges[b] - edges[a]
	cells := min(max(int(math.Ceil(span/widths[len(widths)/10])), 4*n), 32*n)
	g.lo, g.hi, g.scale = edges[a], edges[b], float64(cells)/span
	// c(v) < hi is at most int((hi-lo)·scale), which rounding can make cells.
	top := int((g.hi-g.lo)*g.scale) + 1
	g.first = make([]uint16, top+1)
	for _, e := range edges {
		if e >= g.lo && e < g.hi {
			g.first[int((e-g.lo)*g.scale)+1]++ // counts per cell, shifted by one
		} else if e < g.lo {
			g.first[0]++
		}
	}
	for c := 1; c < len(g.first); c++ {
		g.first[c] += g.first[c-1] // now the edges in lower cells
	}
	return g
}

// find returns the number of edges ≤ v.
func (g *guide) find(v float64) int {
	if v >= g.lo && v < g.hi {
		c := int((v - g.lo) * g.scale)
		if f := int(g.first[c]); int(g.first[c+1])-f <= 4 {
			e := g.edges[f : f+4 : f+4]
			return f + b2i(e[0] <= v) + b2i(e[1] <= v) + b2i(e[2] <= v) + b2i(e[3] <= v)
		}
	}
	return upperBound(g.edges[:len(g.edges)-4], v)
}

// b2i is 1 for true: a SETcc, not a jump.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// upperBound returns the number of elements of the sorted a that are ≤ v. It is
// a branch-free binary search (the comparison becomes a SETcc and a mask), so
// random data costs no branch mispredictions.
func upperBound(a []float64, v float64) int {
	n := len(a)
	if n == 0 {
		return 0
	}
	base := 0
	for n > 1 {
		half := n >> 1
		le := 0
		if a[base+half-1] <= v {
			le = 1 // a SETcc, not a jump
		}
		base += half & -le
		n -= half
	}
	if a[base] <= v {
		base++
	}
	return base
}

// HasCategory reports whether s is a category of the reference of the
// categorical feature f: one of Categories, or of Rare.
func (f *Feature) HasCategory(s string) bool {
	if f.Kind != Categorical {
		return false
	}
	_, ok := f.category(s)
	return ok
}
