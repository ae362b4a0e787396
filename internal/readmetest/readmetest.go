// Package readmetest checks that README.md names what users' scripts call:
// every flag and command of a binary, and every metric family it exposes.
// The README is the reference of these interfaces; the binaries' tests use
// this package so that it cannot fall behind the code.
package readmetest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// Doc is what the module's README.md names.
type Doc struct {
	text string
	// words are the names of metrics, labels and the like the README writes:
	// runs of the characters of a metric name.
	words map[string]bool
	// flags are the flags it writes, as --name or --[no-]name.
	flags map[string]bool
	// prefixes are the metric name prefixes it names as a whole, written
	// `prefix*` (`go_*`, `prometheus_tsdb_*`).
	prefixes []string
}

var (
	word     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	flagRef  = regexp.MustCompile(`--(?:\[no-\])?([a-zA-Z0-9][a-zA-Z0-9._-]*)`)
	wildcard = regexp.MustCompile("`([a-zA-Z_:][a-zA-Z0-9_:]*)\\*`")
)

// Load reads README.md from the module's root: the nearest directory above
// the working directory that holds go.mod. It is read once per test binary.
func Load(t testing.TB) *Doc {
	t.Helper()
	d, err := loaded()
	require.NoError(t, err)
	return d
}

var loaded = sync.OnceValues(func() (*Doc, error) {
	dir, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		return nil, err
	}
	return Parse(string(b)), nil
})

// moduleRoot returns the nearest directory above the working directory
// that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Parse returns the Doc of a README's text.
func Parse(text string) *Doc {
	d := &Doc{text: text, words: map[string]bool{}, flags: map[string]bool{}}
	for _, w := range word.FindAllString(text, -1) {
		d.words[w] = true
	}
	for _, m := range flagRef.FindAllStringSubmatch(text, -1) {
		// A sentence's full stop may follow a flag.
		d.flags[strings.TrimRight(m[1], ".")] = true
	}
	for _, m := range wildcard.FindAllStringSubmatch(text, -1) {
		d.prefixes = append(d.prefixes, m[1])
	}
	return d
}

// TableMetrics returns the metric families the README's metrics tables
// name, in the order they come: the names in backquotes in the first
// column of each table whose first heading is "metric", a `prefix*` as
// written, with its star.
func (d *Doc) TableMetrics() []string {
	var names []string
	inTable := false
	for line := range strings.SplitSeq(d.text, "\n") {
		switch {
		case metricsHeading.MatchString(line):
			inTable = true
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
		}
		cells := strings.Split(line, "|")
		if !inTable || len(cells) < 2 || strings.HasPrefix(line, "|---") {
			continue
		}
		for _, m := range tableName.FindAllStringSubmatch(cells[1], -1) {
			names = append(names, m[1])
		}
	}
	return names
}

var (
	metricsHeading = regexp.MustCompile(`^\|\s*metric\s*\|`)
	tableName      = regexp.MustCompile("`([a-zA-Z_:][a-zA-Z0-9_:]*\\*?)`")
)

// NamesFlag reports whether the README names the flag --name, or
// --[no-]name as kingpin writes a boolean. --proxy.timeout does not name
// --proxy.timeout-extra, nor the other way round.
func (d *Doc) NamesFlag(name string) bool { return d.flags[name] }

// NamesCommand reports whether the README names the command, as
// "exporter profile" or "alertd test rules".
func (d *Doc) NamesCommand(binary, command string) bool {
	re := regexp.MustCompile(regexp.QuoteMeta(binary+" "+command) + `($|[^a-zA-Z0-9_-])`)
	return re.MatchString(d.text)
}

// NamesMetric reports whether the README names the metric family, in full or
// by a `prefix*` that it starts with.
func (d *Doc) NamesMetric(name string) bool {
	if d.words[name] {
		return true
	}
	for _, p := range d.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// kingpin's own flags, which every binary has.
var kingpinFlags = []string{"help", "help-long", "help-man", "version"}

var (
	// A flag's line in the help text: indented, with its short form if any.
	flagLine    = regexp.MustCompile(`^\s+(?:-[a-zA-Z], )?` + flagRef.String())
	commandLine = regexp.MustCompile(`^[a-z]`)
)

// Flags returns the long flags a kingpin --help-long text lists, kingpin's
// own aside, sorted and without repeats.
func Flags(help string) []string {
	var flags []string
	for line := range strings.SplitSeq(help, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil && !slices.Contains(kingpinFlags, m[1]) {
			flags = append(flags, m[1])
		}
	}
	slices.Sort(flags)
	return slices.Compact(flags)
}

// Commands returns the commands a kingpin --help-long text lists, kingpin's
// help aside: the words of each command's usage line before its flags and
// arguments ("test rules").
func Commands(help string) []string {
	_, list, ok := strings.Cut(help, "\nCommands:\n")
	if !ok {
		return nil
	}
	var commands []string
	for line := range strings.SplitSeq(list, "\n") {
		if !commandLine.MatchString(line) {
			continue
		}
		var words []string
		for w := range strings.FieldsSeq(line) {
			if strings.ContainsAny(w[:1], "-[<") {
				break
			}
			words = append(words, strings.TrimSuffix(w, "*"))
		}
		if c := strings.Join(words, " "); c != "help" {
			commands = append(commands, c)
		}
	}
	return commands
}

// MetricFamilies returns the names of the metric families in an exposition in
// the Prometheus text format, sorted.
func MetricFamilies(t testing.TB, exposition string) []string {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(exposition))
	require.NoError(t, err)
	names := make([]string, 0, len(families))
	for name := range families {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// RequireFlagsAndCommands fails t unless the README names every flag and
// command in the binary's --help-long text.
func (d *Doc) RequireFlagsAndCommands(t testing.TB, binary, helpLong string) {
	t.Helper()
	flags, commands := Flags(helpLong), Commands(helpLong)
	require.NotEmpty(t, flags, "no flags in the help text:\n%s", helpLong)
	var missing []string
	for _, f := range flags {
		if !d.NamesFlag(f) {
			missing = append(missing, "--"+f)
		}
	}
	for _, c := range commands {
		if !d.NamesCommand(binary, c) {
			missing = append(missing, binary+" "+c)
		}
	}
	require.Empty(t, missing, "README.md does not document these flags and commands of %s", binary)
}

// RequireMetrics fails t unless the README names every metric family in the
// exposition, in the Prometheus text format.
func (d *Doc) RequireMetrics(t testing.TB, exposition string) {
	t.Helper()
	d.requireMetricNames(t, MetricFamilies(t, exposition))
}

// RequireGathered fails t unless the README names every metric family g
// gathers.
func (d *Doc) RequireGathered(t testing.TB, g prometheus.Gatherer) {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	names := make([]string, 0, len(families))
	for _, mf := range families {
		names = append(names, mf.GetName())
	}
	d.requireMetricNames(t, names)
}

func (d *Doc) requireMetricNames(t testing.TB, names []string) {
	t.Helper()
	var missing []string
	for _, name := range names {
		if !d.NamesMetric(name) {
			missing = append(missing, name)
		}
	}
	require.Empty(t, missing, "README.md does not document these metric families")
}

// flagDefault is a default the README's flag tables give a flag.
type flagDefault struct {
	binary, flag, value string
	line                int
}

var (
	flagsHeading = regexp.MustCompile(`^\|\s*flag\s*\|\s*default\s*\|`)
	backquoted   = regexp.MustCompile("`([^`]*)`")
	// A default kingpin shows in a flag's line: --name=VALUE, quoted or not,
	// an upper-case placeholder being none.
	helpDefault = regexp.MustCompile(`^\s+(?:-[a-zA-Z], )?--([a-zA-Z0-9][a-zA-Z0-9._-]*)=("[^"]*"|\S+)`)
	placeholder = regexp.MustCompile(`^[A-Z][A-Z0-9._-]*$`)
)

// flagDefaults returns the defaults the README's flag tables (those whose
// headings start "flag | default") give, each row's defaults written in
// backquotes, one for each flag of the row or one for all. A default in
// words ("(none)", "host of --proxy.upstream") or one computed at run time
// (`http://<hostname>:<port>/`) is left out. Rows in the alertd chapter
// are alertd's, the others the exporter's.
func (d *Doc) flagDefaults() []flagDefault {
	var out []flagDefault
	binary, inTable := "exporter", false
	for i, line := range strings.Split(d.text, "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			binary = "exporter"
			if strings.HasPrefix(line, "## alertd") {
				binary = "alertd"
			}
		case flagsHeading.MatchString(line):
			inTable = true
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
		}
		cells := strings.Split(line, "|")
		if !inTable || len(cells) < 3 || strings.HasPrefix(line, "|---") {
			continue
		}
		def := strings.TrimSpace(cells[2])
		if !strings.HasPrefix(def, "`") || strings.Contains(def, "<") {
			continue
		}
		var flags, values []string
		for _, m := range flagRef.FindAllStringSubmatch(cells[1], -1) {
			flags = append(flags, m[1])
		}
		for _, m := range backquoted.FindAllStringSubmatch(def, -1) {
			values = append(values, m[1])
		}
		for j, f := range flags {
			switch {
			case len(values) == len(flags):
				out = append(out, flagDefault{binary, f, values[j], i + 1})
			case len(values) == 1:
				out = append(out, flagDefault{binary, f, values[0], i + 1})
			}
		}
	}
	return out
}

// sameDefault reports whether the README's default and kingpin's are the
// same value, written alike or not: 1m and 1m0s, 7d and 1w, 268435456 and
// 256MiB.
func sameDefault(readme, help string) bool {
	if readme == help {
		return true
	}
	if a, err := model.ParseDuration(readme); err == nil {
		b, err := model.ParseDuration(help)
		return err == nil && a == b
	}
	if a, err := bytesOf(readme); err == nil {
		b, err := bytesOf(help)
		return err == nil && a == b
	}
	return false
}

func bytesOf(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	b, err := units.ParseBase2Bytes(s)
	return int64(b), err
}

// RequireFlagDefaults fails t unless every default the README's flag
// tables give one of the binary's flags is the default its --help-long
// text shows, for the flag of at least one command (`--output` is `text`
// for one command and `-` for another). Booleans, whose defaults kingpin
// does not show, are not checked.
func (d *Doc) RequireFlagDefaults(t testing.TB, binary, helpLong string) {
	t.Helper()
	defaults := map[string][]string{}
	for line := range strings.SplitSeq(helpLong, "\n") {
		m := helpDefault.FindStringSubmatch(line)
		if m == nil || placeholder.MatchString(m[2]) {
			continue
		}
		defaults[m[1]] = append(defaults[m[1]], strings.Trim(m[2], `"`))
	}
	require.NotEmpty(t, defaults, "no defaults in the help text:\n%s", helpLong)
	var wrong []string
	for _, fd := range d.flagDefaults() {
		got, ok := defaults[fd.flag]
		if fd.binary != binary || !ok {
			continue
		}
		if !slices.ContainsFunc(got, func(h string) bool { return sameDefault(fd.value, h) }) {
			wrong = append(wrong, fmt.Sprintf("README.md:%d: --%s defaults to %q, the help says %q", fd.line, fd.flag, fd.value, got))
		}
	}
	require.Empty(t, wrong, "README.md gives these flags of %s other defaults than the code", binary)
}
