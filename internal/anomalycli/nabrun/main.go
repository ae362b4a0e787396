// Command nabrun runs anomaly detectors over the Numenta Anomaly Benchmark
// data and writes their scores in NAB's results layout, for
// scripts/bench-nab.sh: for each algorithm A and each
// DATA/<category>/<file>.csv it writes OUT/A/<category>/A_<file>.csv through
// anomalycli.ScoreFile, the code behind `alertd anomaly score`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelmon/modelmon/anomaly"
	"github.com/modelmon/modelmon/internal/anomalycli"
)

func main() {
	os.Exit(run())
}

func run() int {
	data := flag.String("data", "../shared/bench/nab/data", "NAB data directory (<category>/<file>.csv).")
	out := flag.String("out", "nab-results", "Results directory; one subdirectory per algorithm.")
	algs := flag.String("algorithms", strings.Join(anomaly.Algorithms(), ","), "Comma-separated algorithms to run.")
	list := flag.Bool("list", false, "Print the algorithms, the default first, and exit.")
	flag.Parse()
	if *list {
		fmt.Println(anomaly.Default)
		for _, a := range anomaly.Algorithms() {
			if a != anomaly.Default {
				fmt.Println(a)
			}
		}
		return 0
	}

	files, err := filepath.Glob(filepath.Join(*data, "*", "*.csv"))
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "no CSV files under %s/*/\n", *data)
		return 1
	}
	for _, a := range strings.Split(*algs, ",") {
		for _, f := range files {
			cat := filepath.Base(filepath.Dir(f))
			dir := filepath.Join(*out, a, cat)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if err := anomalycli.ScoreFile(f, filepath.Join(dir, a+"_"+filepath.Base(f)), a); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	return 0
}
