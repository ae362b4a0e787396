// Command gen writes the data fixtures of internal/driftcli's tests:
//
//	go run ./internal/driftcli/testdata/gen
//
// from the module root. The data are synthetic and seeded, so the files only
// change when this program does. Columns: age (numeric, whole years), income
// (numeric, about 5% missing), city (categorical), plan (binary), score (the
// model's output, numeric in [0, 1]).
package main

import (
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type row struct {
	age    float64
	income float64 // NaN is missing
	city   string
	plan   string
	score  float64
}

type dist struct {
	ageShift float64
	cities   []string
	weights  []float64
}

var (
	base    = dist{cities: []string{"paris", "oslo", "lima", "kyiv", "rome"}, weights: []float64{0.4, 0.25, 0.2, 0.1, 0.05}}
	shifted = dist{ageShift: 10, cities: base.cities, weights: []float64{0.2, 0.2, 0.4, 0.1, 0.1}}
)

func draw(r *rand.Rand, d dist) row {
	age := math.Round(min(max(40+12*r.NormFloat64()+d.ageShift, 18), 90))
	income := math.Round(math.Exp(10.5+0.5*r.NormFloat64())) / 100
	if r.Float64() < 0.05 {
		income = math.NaN()
	}
	u, city := r.Float64(), d.cities[len(d.cities)-1]
	for i, w := range d.weights {
		if u < w {
			city = d.cities[i]
			break
		}
		u -= w
	}
	plan := "free"
	if r.Float64() < 0.3 {
		plan = "pro"
	}
	score := 1 / (1 + math.Exp(-(age-45)/10))
	return row{age: age, income: income, city: city, plan: plan, score: math.Round(score*1000) / 1000}
}

func rows(seed uint64, n int, d dist) []row {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]row, n)
	for i := range out {
		out[i] = draw(r, d)
	}
	return out
}

func num(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func writeCSV(path string, rs []row, drop, extra string) {
	var b strings.Builder
	cols := []string{"age", "income", "city", "plan", "score"}
	var header []string
	for _, c := range cols {
		if c != drop {
			header = append(header, c)
		}
	}
	if extra != "" {
		header = append(header, extra)
	}
	b.WriteString(strings.Join(header, ",") + "\n")
	for i, r := range rs {
		vals := map[string]string{"age": num(r.age), "income": num(r.income), "city": r.city, "plan": r.plan, "score": num(r.score)}
		var rec []string
		for _, c := range cols {
			if c != drop {
				rec = append(rec, vals[c])
			}
		}
		if extra != "" {
			rec = append(rec, []string{"ios", "android", "web"}[i%3])
		}
		b.WriteString(strings.Join(rec, ",") + "\n")
	}
	write(path, b.String())
}

func writeJSONL(path string, rs []row) {
	var b strings.Builder
	for _, r := range rs {
		income := num(r.income)
		if income == "" {
			income = "null"
		}
		// Keys in the order of the CSV columns, which json.Marshal of a map would sort.
		fmt.Fprintf(&b, `{"age":%s,"income":%s,"city":%q,"plan":%q,"score":%s}`+"\n", num(r.age), income, r.city, r.plan, num(r.score))
	}
	write(path, b.String())
}

func write(path, s string) {
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", path)
}

func main() {
	dir := filepath.Join("internal", "driftcli", "testdata")
	ref := rows(1, 1000, base)
	clean := rows(2, 400, base)
	drifted := rows(3, 400, shifted)
	writeCSV(filepath.Join(dir, "reference.csv"), ref, "", "")
	writeJSONL(filepath.Join(dir, "reference.jsonl"), ref)
	writeCSV(filepath.Join(dir, "current-clean.csv"), clean, "", "")
	writeJSONL(filepath.Join(dir, "current-clean.jsonl"), clean)
	writeCSV(filepath.Join(dir, "current-shifted.csv"), drifted, "", "")
	writeJSONL(filepath.Join(dir, "current-shifted.jsonl"), drifted)
	// No plan column, and a device column the reference lacks.
	writeCSV(filepath.Join(dir, "current-columns.csv"), clean, "plan", "device")
}
