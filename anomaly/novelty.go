package anomaly

// Novelty parameters (see novelty).
const (
	// novLevelBits: a value is quantised into novLevels = 1<<novLevelBits
	// levels by its rank among the recent values.
	novLevelBits = 3
	novLevels    = 1 << novLevelBits
	// novOrder is how many symbols a context holds: the previous
	// novOrder-1 symbols and the current one.
	novOrder = 5
	// novBits: the table holds 1<<novBits slots.
	novBits = 12
	// novHalfLife is the points after which a context's count halves, so
	// that a pattern not seen for long becomes news again.
	novHalfLife = 4096
)

// novelty scores how new the recent pattern of a series is, like NAB's
// contextOSE detector and HTM's sequence memory: each value is quantised
// into novLevels levels by its rank among the recent values (the
// ensemble's level window, so levels are quantiles and one outlier does not
// squeeze the others into one level), the last novOrder symbols
// form a context, and a context's hashed slot counts how often it occurred
// (halving every novHalfLife points). The raw novelty of a point is
// 1/(1+count) of its context: 1 for a context never seen, small for a
// common one. It is cheap: a multiply, a shift and one table slot a point.
type novelty struct {
	code  uint32 // the last novOrder symbols, novLevels-ary
	n     int    // symbols added
	count [1 << novBits]uint16
	epoch [1 << novBits]uint16 // n/novHalfLife when count was last updated
}

// add takes the next value as its rank u in [0, 1] among the recent
// values, updates the context table and returns the raw novelty of the
// context ending in it, in (0, 1] (1 before novOrder symbols).
func (c *novelty) add(u float64) float64 {
	s := uint32(0)
	switch f := u * novLevels; {
	case f >= novLevels-1:
		s = novLevels - 1
	case f > 0:
		s = uint32(f)
	}
	c.code = (c.code<<novLevelBits | s) & (1<<(novLevelBits*novOrder) - 1)
	c.n++
	if c.n < novOrder {
		return 1
	}
	i := (c.code * 2654435761) >> (32 - novBits)
	e := uint16(c.n / novHalfLife)
	cnt := c.count[i]
	if age := e - c.epoch[i]; age > 0 {
		if age >= 16 {
			cnt = 0
		} else {
			cnt >>= age
		}
	}
	raw := 1 / (1 + float64(cnt))
	if cnt < 1<<15 {
		cnt++
	}
	c.count[i], c.epoch[i] = cnt, e
	return raw
}
