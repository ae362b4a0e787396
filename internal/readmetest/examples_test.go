package readmetest

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	// The service discoveries alertd registers (internal/alertd/alertd.go),
	// so that scrape_configs load here as in alertd.
	_ "github.com/prometheus/prometheus/discovery/file"
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/config"
)

// yamlBlock is a ```yaml block of the README and the line its text starts on.
type yamlBlock struct {
	line int
	text string
}

var fence = regexp.MustCompile("^```")

func yamlBlocks(text string) []yamlBlock {
	var (
		blocks []yamlBlock
		cur    *yamlBlock
		body   []string
	)
	for i, line := range strings.Split(text, "\n") {
		switch {
		case cur == nil && line == "```yaml":
			cur, body = &yamlBlock{line: i + 2}, nil
		case cur != nil && fence.MatchString(line):
			cur.text = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body = append(body, line)
		}
	}
	return blocks
}

// yamlKeys returns the keys a struct's fields take in YAML.
func yamlKeys(v any) map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}

// fragmentErrors are what an alertd example that shows one or two sections
// may fail on: a reference to what it leaves out (a receiver, a route, the
// classification section) or a secret's file on the reader's disk. Anything
// else (an unknown field, a value refused) is an error in the README.
var fragmentErrors = regexp.MustCompile(`undefined receiver|no route provided|needs a classification section|couldn't read \w+_file`)

// Every YAML example of an exporter or alertd configuration in the README
// loads: the complete files as they are, the fragments but for what they
// leave out. A newcomer copies them; a renamed key or a new check must not
// leave them behind.
func TestYAMLExamplesLoad(t *testing.T) {
	exporterKeys := yamlKeys(config.Config{})
	alertdKeys := yamlKeys(alertconfig.Config{})
	var exporter, alertd, complete int
	for _, b := range yamlBlocks(Load(t).text) {
		var top map[string]any
		if yaml.Unmarshal([]byte(b.text), &top) != nil || len(top) == 0 {
			continue // a list of rules or acknowledgements, a fragment of one
		}
		isExporter, isAlertd := true, true
		for k := range top {
			isExporter = isExporter && exporterKeys[k]
			isAlertd = isAlertd && alertdKeys[k]
		}
		name := fmt.Sprintf("README.md:%d", b.line)
		switch {
		case isExporter:
			exporter++
			_, err := config.Load(b.text)
			require.NoError(t, err, "%s:\n%s", name, b.text)
		case isAlertd:
			alertd++
			_, err := alertconfig.Load(b.text, t.TempDir())
			// A file with a route and its receivers is complete.
			if top["route"] != nil && top["receivers"] != nil {
				complete++
				require.NoError(t, err, "%s is a complete configuration:\n%s", name, b.text)
			} else if err != nil {
				require.Regexp(t, fragmentErrors, err.Error(), "%s:\n%s", name, b.text)
			}
		}
	}
	// The configuration sections' examples are found: the exporter's, the
	// complete alertd file, and alertd's sections.
	require.GreaterOrEqual(t, exporter, 5)
	require.GreaterOrEqual(t, complete, 1)
	require.GreaterOrEqual(t, alertd, 10)
}
