// Command generate writes modelmon's Grafana dashboards as JSON, for
// provisioning or import: `go run ./dashboards/cmd/generate -out dashboards/json`
// (what `make dashboards` runs).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/modelmon/modelmon/dashboards"
)

func main() {
	out := flag.String("out", "dashboards/json", "Directory the JSON files are written to.")
	flag.Parse()
	if err := dashboards.Write(*out, dashboards.DefaultOptions()); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}
