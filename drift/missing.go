package drift

import "math"

// ZTest returns the two-proportion z-test of x1 successes out of n1 against x2 out
// of n2, with the pooled proportion p̂ = (x1+x2)/(n1+n2):
//
//	z = (x2/n2 - x1/n1) / sqrt(p̂(1-p̂)(1/n1 + 1/n2)),
//
// and its two-sided p-value erfc(|z|/√2). When p̂ is 0 or 1 both proportions are
// equal, and ZTest returns z = 0, p = 1. The "z" method applies it to binary
// features (the share of the reference's most common bin), as Evidently does for
// categorical features with at most two values; default level 0.05. Literature:
// Fleiss, Levin and Paik, "Statistical Methods for Rates and Proportions", 3rd ed.,
// Wiley, 2003, §2.5. The test is the square root of ChiSquare on the 2×2 table.
func ZTest(x1, n1, x2, n2 float64) (z, p float64) {
	if n1 <= 0 || n2 <= 0 || x1 < 0 || x2 < 0 || x1 > n1 || x2 > n2 {
		return math.NaN(), math.NaN()
	}
	ph := (x1 + x2) / (n1 + n2)
	se := math.Sqrt(ph * (1 - ph) * (1/n1 + 1/n2))
	if se == 0 {
		return 0, 1
	}
	z = (x2/n2 - x1/n1) / se
	return z, math.Erfc(math.Abs(z) / math.Sqrt2)
}

// MissingRate tests a change of the missing rate: refMissing of refTotal values in
// the reference against curMissing of curTotal in the window. It returns the
// change of rate (current minus reference) and the p-value of ZTest. Default
// level 0.05; the Detector calibrates it by simulation, because with a rare
// missing value (a rate near 0) the normal approximation is anti-conservative.
func MissingRate(refMissing, refTotal, curMissing, curTotal float64) (diff, p float64) {
	_, p = ZTest(refMissing, refTotal, curMissing, curTotal)
	if math.IsNaN(p) {
		return math.NaN(), math.NaN()
	}
	return curMissing/curTotal - refMissing/refTotal, p
}
