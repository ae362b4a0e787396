package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/driftcli"
)

// promql parses the dashboards' queries as Prometheus does.
var promql = parser.NewParser(parser.Options{})

var update = flag.Bool("update", false, "rewrite json/*.json from the builders")

// The committed JSON is what the builders produce: `make dashboards` was run.
func TestGolden(t *testing.T) {
	files, err := Build(DefaultOptions())
	require.NoError(t, err)
	if *update {
		require.NoError(t, Write("json", DefaultOptions()))
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		want, err := Marshal(f.Dashboard)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join("json", f.Name))
		require.NoError(t, err, "run `make dashboards`")
		require.True(t, bytes.Equal(want, got), "json/%s differs from what the builders produce: run `make dashboards`", f.Name)
	}
	committed, err := filepath.Glob("json/*.json")
	require.NoError(t, err)
	for _, c := range committed {
		require.Contains(t, names, filepath.Base(c), "%s is not built by any builder: remove it", c)
	}
}

// Dashboard uids are stable and unique: links and bookmarks rely on them.
func TestUIDs(t *testing.T) {
	files, err := Build(DefaultOptions())
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, f := range files {
		require.NotNil(t, f.Dashboard.Uid, f.Name)
		uid := *f.Dashboard.Uid
		require.True(t, strings.HasPrefix(uid, "modelmon-"), uid)
		require.False(t, seen[uid], "duplicate uid %s", uid)
		seen[uid] = true
	}
}

// dashQuery is a PromQL query of a dashboard: a panel's, an annotation's,
// or a variable's label_values selector.
type dashQuery struct {
	dashboard, where, expr string
	// parsed is expr with its variables substituted, parsed.
	parsed parser.Expr
}

func (q dashQuery) String() string { return q.dashboard + ": " + q.where + ": " + q.expr }

var (
	variableRE    = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)
	labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
)

// builtins are Grafana's variables with values a query parses with.
var builtins = map[string]string{"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}

// substitute replaces the dashboard's variables by a placeholder that shows
// in label matchers (__var_<name>__), a text box by its default value (a
// number a query compares with, say), and Grafana's by durations. defined
// holds the dashboard's variables, each with its default value if it is a
// text box.
func substitute(expr string, defined map[string]string) (string, error) {
	var err error
	out := variableRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := variableRE.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := builtins[name]; ok {
			return v
		}
		v, ok := defined[name]
		if !ok {
			err = fmt.Errorf("variable $%s is not defined", name)
		}
		if v != "" {
			return v
		}
		return "__var_" + name + "__"
	})
	return out, err
}

// dashboardQueries returns every query of every dashboard, parsed, from
// the JSON the builders produce.
func dashboardQueries(t *testing.T) []dashQuery {
	t.Helper()
	files, err := Build(DefaultOptions())
	require.NoError(t, err)
	var out []dashQuery
	for _, f := range files {
		b, err := Marshal(f.Dashboard)
		require.NoError(t, err)
		var d struct {
			Panels     []panelJSON `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
			Annotations struct {
				List []struct {
					Name   string `json:"name"`
					Target struct {
						Expr string `json:"expr"`
					} `json:"target"`
				} `json:"list"`
			} `json:"annotations"`
		}
		require.NoError(t, json.Unmarshal(b, &d))
		defined := map[string]string{}
		for _, v := range d.Templating.List {
			defined[v.Name] = ""
			if v.Type == "textbox" {
				s, ok := v.Query.(string)
				require.True(t, ok && s != "", "%s: text box %s: want a default value", f.Name, v.Name)
				defined[v.Name] = s
			}
		}
		var raw []dashQuery
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			s, ok := v.Query.(string)
			require.True(t, ok, "%s: variable %s: query is not a string", f.Name, v.Name)
			m := labelValuesRE.FindStringSubmatch(s)
			require.NotNil(t, m, "%s: variable %s: want label_values(selector, label), got %s", f.Name, v.Name, s)
			raw = append(raw, dashQuery{dashboard: f.Name, where: "variable " + v.Name, expr: m[1]})
		}
		for _, a := range d.Annotations.List {
			raw = append(raw, dashQuery{dashboard: f.Name, where: "annotation " + a.Name, expr: a.Target.Expr})
		}
		var walk func([]panelJSON)
		walk = func(ps []panelJSON) {
			for _, p := range ps {
				for _, tg := range p.Targets {
					raw = append(raw, dashQuery{dashboard: f.Name, where: fmt.Sprintf("panel %q (%s)", p.Title, tg.RefID), expr: tg.Expr})
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		for _, q := range raw {
			require.NotEmpty(t, q.expr, q.String())
			s, err := substitute(q.expr, defined)
			require.NoError(t, err, q.String())
			q.parsed, err = promql.ParseExpr(s)
			require.NoError(t, err, "%s\nafter substitution: %s", q, s)
			out = append(out, q)
		}
	}
	require.NotEmpty(t, out)
	return out
}

type panelJSON struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panelJSON `json:"panels"`
}

// selectors returns the vector selectors of a query.
func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// matcher returns the matcher of a selector on a label, or nil.
func matcher(vs *parser.VectorSelector, name string) *labels.Matcher {
	for _, m := range vs.LabelMatchers {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// usesVariable says whether vs matches label against the variable of the
// same name: label=~"$label".
func usesVariable(vs *parser.VectorSelector, label string) bool {
	m := matcher(vs, label)
	return m != nil && m.Type == labels.MatchRegexp && m.Value == "__var_"+label+"__"
}

// isRecorded says whether a metric name is a recording rule's
// (level:metric:operations).
func isRecorded(name string) bool { return strings.Contains(name, ":") }

// Every query parses as PromQL once its variables are substituted, uses
// only variables its dashboard defines, and takes its selector from them:
// the namespace and job variables for raw series, the model variable for
// recording rules (which are summed by model).
func TestQueriesParseAndTakeSelectors(t *testing.T) {
	for _, q := range dashboardQueries(t) {
		vss := selectors(q.parsed)
		require.NotEmpty(t, vss, q.String())
		for _, vs := range vss {
			switch {
			case vs.Name == "ALERTS":
				require.True(t, usesVariable(vs, "model"), "%s: ALERTS without model=~\"$model\"", q)
			case isRecorded(vs.Name):
				require.True(t, usesVariable(vs, "model"), "%s: %s without model=~\"$model\"", q, vs.Name)
			default:
				if strings.HasPrefix(q.where, "variable namespace") {
					continue
				}
				require.True(t, usesVariable(vs, "namespace"), "%s: %s without namespace=~\"$namespace\"", q, vs.Name)
				if !strings.HasPrefix(q.where, "variable job") {
					require.True(t, usesVariable(vs, "job"), "%s: %s without job=~\"$job\"", q, vs.Name)
				}
			}
		}
	}
}

// recordingRules returns the names the repository's rule files record,
// each with the expressions that record it.
func recordingRules(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("../rules/*.rules.yml")
	require.NoError(t, err)
	more, err := filepath.Glob("../deploy/prometheus/*.rules.yml")
	require.NoError(t, err)
	files = append(files, more...)
	require.NotEmpty(t, files)
	out := map[string][]string{}
	for _, f := range files {
		rgs, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
		require.Empty(t, errs, f)
		for _, g := range rgs.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					out[r.Record] = append(out[r.Record], r.Expr)
				}
			}
		}
	}
	// And those `exporter alerts` writes for the models' SLOs.
	cfg, err := config.Load("models:\n  - name: m\n    slos: {availability: 0.999, latency: 0.99, latency_threshold: 0.1, accuracy: 0.9}\n")
	require.NoError(t, err)
	b, err := driftcli.QualityAlerts(cfg)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "slo.rules.yml")
	require.NoError(t, os.WriteFile(f, b, 0o644))
	rgs, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	require.Empty(t, errs)
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = append(out[r.Record], r.Expr)
			}
		}
	}
	return out
}

// Recording rules the dashboards read are in the repository's rule files,
// or in what `exporter alerts` writes.
func TestRecordingRulesExist(t *testing.T) {
	recorded := recordingRules(t)
	used := 0
	for _, q := range dashboardQueries(t) {
		for _, vs := range selectors(q.parsed) {
			if isRecorded(vs.Name) {
				used++
				require.NotEmpty(t, recorded[vs.Name], "%s: %s is not recorded by rules/ or deploy/prometheus/", q, vs.Name)
			}
		}
	}
	require.NotZero(t, used)
}

// The data source variable and each panel's data source: panels follow the
// variable, so one import serves any Prometheus-compatible data source.
func TestPanelsUseTheDatasourceVariable(t *testing.T) {
	files, err := Build(DefaultOptions())
	require.NoError(t, err)
	for _, f := range files {
		b, err := Marshal(f.Dashboard)
		require.NoError(t, err)
		var d struct {
			Panels []struct {
				Type       string `json:"type"`
				Title      string `json:"title"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(b, &d))
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			require.NotNil(t, p.Datasource, "%s: %s", f.Name, p.Title)
			require.Equal(t, "${datasource}", p.Datasource.UID, "%s: %s", f.Name, p.Title)
		}
		require.True(t, slices.ContainsFunc(f.Dashboard.Templating.List, func(v dashboard.VariableModel) bool {
			return v.Name == "datasource" && string(v.Type) == "datasource"
		}), f.Name)
	}
}

// The provisioning files are Grafana's format: a file provider for the
// dashboards' directory, and Prometheus data sources.
func TestProvisioning(t *testing.T) {
	b, err := os.ReadFile("provisioning/dashboards.yml")
	require.NoError(t, err)
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			OrgID                 int    `yaml:"orgId"`
			Folder                string `yaml:"folder"`
			FolderUID             string `yaml:"folderUid"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	require.NoError(t, yaml.UnmarshalStrict(b, &dp))
	require.Equal(t, 1, dp.APIVersion)
	require.Len(t, dp.Providers, 1)
	require.Equal(t, "file", dp.Providers[0].Type)
	require.NotEmpty(t, dp.Providers[0].Options.Path)

	b, err = os.ReadFile("provisioning/datasources.yml")
	require.NoError(t, err)
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string         `yaml:"name"`
			UID       string         `yaml:"uid"`
			Type      string         `yaml:"type"`
			Access    string         `yaml:"access"`
			URL       string         `yaml:"url"`
			IsDefault bool           `yaml:"isDefault"`
			JSONData  map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	require.NoError(t, yaml.UnmarshalStrict(b, &ds))
	require.NotEmpty(t, ds.Datasources)
	for _, d := range ds.Datasources {
		require.Equal(t, "prometheus", d.Type, d.Name)
		require.NotEmpty(t, d.URL, d.Name)
	}
}
