//lint:file-ignore SA1019 Grafana provisions the classic dashboard JSON (schema v1) from files in every version we support; dashboardv2 needs Grafana 12 and its v2 API.

package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// File is a dashboard and the name of its JSON file.
type File struct {
	// Name is the file's name, e.g. model-overview.json.
	Name      string
	Dashboard dashboard.Dashboard
}

// builders are the dashboards, by file name, in the order Build returns
// them.
var builders = []struct {
	name  string
	build func(Options) (dashboard.Dashboard, error)
}{
	{"model-overview.json", overview},
	{"data-drift.json", drift},
	{"model-quality.json", quality},
	{"alertd.json", alertd},
}

// Build returns every dashboard built with opts.
func Build(opts Options) ([]File, error) {
	files := make([]File, 0, len(builders))
	for _, b := range builders {
		d, err := b.build(opts)
		if err != nil {
			return nil, fmt.Errorf("couldn't build %s: %w", b.name, err)
		}
		files = append(files, File{Name: b.name, Dashboard: d})
	}
	return files, nil
}

// Marshal returns a dashboard as the JSON Grafana imports: indented by two
// spaces, with a final newline.
func Marshal(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("couldn't marshal dashboard: %w", err)
	}
	return buf.Bytes(), nil
}

// Write builds every dashboard with opts and writes it to dir.
func Write(dir string, opts Options) error {
	files, err := Build(opts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("couldn't create %s: %w", dir, err)
	}
	for _, f := range files {
		b, err := Marshal(f.Dashboard)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), b, 0o644); err != nil {
			return fmt.Errorf("couldn't write dashboard: %w", err)
		}
	}
	return nil
}
