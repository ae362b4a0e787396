package drift

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// DetectionPower is the power at which DetectablePSI states the smallest
// shift a window could detect: found four times in five, Cohen's convention.
const DetectionPower = 0.8

// NoncentralChiSquareSurvival returns P(X > x) for X noncentral χ² with df
// degrees of freedom and noncentrality lambda: the Poisson(λ/2) mixture of
// central χ² distributions with df + 2j degrees of freedom (Johnson, Kotz and
// Balakrishnan, "Continuous Univariate Distributions", vol. 2, 2nd ed.,
// Wiley, 1995, §29.1).
func NoncentralChiSquareSurvival(x float64, df int, lambda float64) float64 {
	if x <= 0 {
		return 1
	}
	if lambda <= 0 {
		return distuv.ChiSquared{K: float64(df)}.Survival(x)
	}
	h := lambda / 2
	// The Poisson weights beyond mean + 12 standard deviations add less
	// than 1e-30.
	last := int(h+12*math.Sqrt(h)) + 30
	var p float64
	for j := 0; j <= last; j++ {
		lg, _ := math.Lgamma(float64(j) + 1)
		w := math.Exp(-h + float64(j)*math.Log(h) - lg)
		p += w * distuv.ChiSquared{K: float64(df + 2*j)}.Survival(x)
	}
	return math.Min(p, 1)
}

// NoncentralityForPower returns the noncentrality λ at which Pearson's χ²
// test with df degrees of freedom at level alpha rejects with probability
// power: the λ of Cohen's power tables ("Statistical Power Analysis for the
// Behavioral Sciences", 2nd ed., 1988, table 7.4.15), and of G*Power.
func NoncentralityForPower(df int, alpha, power float64) float64 {
	if df < 1 || !(alpha > 0 && alpha < 1) || !(power > alpha && power < 1) {
		return math.NaN()
	}
	crit := distuv.ChiSquared{K: float64(df)}.Quantile(1 - alpha)
	powerAt := func(l float64) float64 { return NoncentralChiSquareSurvival(crit, df, l) }
	lo, hi := 0.0, 1.0
	for powerAt(hi) < power {
		lo, hi = hi, 2*hi
	}
	for range 100 {
		mid := (lo + hi) / 2
		if powerAt(mid) < power {
			lo = mid
		} else {
			hi = mid
		}
		if hi-lo <= 1e-12*hi {
			break
		}
	}
	return (lo + hi) / 2
}

// DetectablePSI returns the smallest shift of a feature's distribution over
// bins (k of them with reference values, so df = k − 1) that Pearson's χ²
// test of a window of n values against a reference of m, at level alpha,
// detects with probability DetectionPower, given lambda =
// NoncentralityForPower(df, alpha, DetectionPower): the effect size w² =
// Σ (p − q)² / q of Cohen, λ (1/n + 1/m). For small shifts PSI = Σ (p − q)
// ln(p / q) is w² to second order, so this is the smallest PSI a window can
// tell from sampling noise: a window whose DetectablePSI is above the
// threshold that matters (0.1, 0.2) says "not enough data", not "no drift".
// It returns +Inf for an empty window or reference.
func DetectablePSI(lambda, n, m float64) float64 {
	if n <= 0 || m <= 0 {
		return math.Inf(1)
	}
	return lambda * (1/n + 1/m)
}
