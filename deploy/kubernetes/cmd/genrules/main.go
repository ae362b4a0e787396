// Command genrules writes deploy/kubernetes/prometheusrule.yaml from the
// repository's rule files (what `make kubernetes` runs from the root).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/modelmon/modelmon/deploy/kubernetes"
)

func main() {
	root := flag.String("root", ".", "The repository's root.")
	out := flag.String("out", "deploy/kubernetes/prometheusrule.yaml", "The file written.")
	flag.Parse()
	b, err := kubernetes.PrometheusRule(*root)
	if err == nil {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genrules:", err)
		os.Exit(1)
	}
}
