// Package archtest enforces the import rules of STYLE.md §2 over the whole
// module with `go list`, the way node_exporter's depguard rule does.
package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/modelmon/modelmon"

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("go list: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// TestImports checks, for every package of the module, the rules that keep
// the layers apart.
func TestImports(t *testing.T) {
	pure := []string{module + "/drift", module + "/anomaly", module + "/classify", module + "/escalate", module + "/matcher"}
	for _, p := range listPackages(t) {
		t.Run(strings.TrimPrefix(p.ImportPath, module+"/"), func(t *testing.T) {
			isCmd := under(p.ImportPath, module+"/cmd") || under(p.ImportPath, module+"/examples")
			for _, imp := range p.Imports {
				// Nothing imports a binary or a process package but its own main.
				require.False(t, under(imp, module+"/cmd"), "%s imports %s", p.ImportPath, imp)
				for _, proc := range []string{"exporter", "alertd"} {
					if under(imp, module+"/internal/"+proc) {
						require.True(t, p.ImportPath == module+"/cmd/"+proc, "%s imports %s: only cmd/%s may", p.ImportPath, imp, proc)
					}
				}
				// Only main packages parse flags and build loggers.
				if imp == "github.com/alecthomas/kingpin/v2" || under(imp, "github.com/prometheus/common/promslog") {
					require.True(t, isCmd, "%s imports %s: only cmd/* may", p.ImportPath, imp)
				}
			}
			// The pure libraries: standard library and gonum only, no network,
			// no metrics, no logging, and none imports another but the
			// label matchers they share.
			for _, pp := range pure {
				if !under(p.ImportPath, pp) {
					continue
				}
				for _, imp := range p.Imports {
					ok := isStd(imp) && imp != "net/http" && imp != "net" && imp != "log/slog" ||
						under(imp, "gonum.org/v1/gonum") || under(imp, pp) || imp == module+"/matcher"
					require.True(t, ok, "%s is a pure package and may not import %s", p.ImportPath, imp)
				}
			}
			// Dashboards know the collector's metric names and nothing else of ours.
			if under(p.ImportPath, module+"/dashboards") {
				for _, imp := range p.Imports {
					if under(imp, module) {
						require.True(t, under(imp, module+"/collector") || under(imp, module+"/dashboards"),
							"%s imports %s", p.ImportPath, imp)
					}
				}
			}
		})
	}
}
