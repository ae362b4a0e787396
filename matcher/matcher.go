package matcher

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MatchType is a matcher's operator.
type MatchType int

// The operators of Alertmanager's matchers.
const (
	MatchEqual     MatchType = iota // =
	MatchNotEqual                   // !=
	MatchRegexp                     // =~
	MatchNotRegexp                  // !~
)

func (t MatchType) String() string {
	switch t {
	case MatchEqual:
		return "="
	case MatchNotEqual:
		return "!="
	case MatchRegexp:
		return "=~"
	case MatchNotRegexp:
		return "!~"
	}
	return fmt.Sprintf("MatchType(%d)", int(t))
}

// Matcher matches one label's value, as Alertmanager's do: a missing label
// has the empty value, and regular expressions are anchored at both ends.
type Matcher struct {
	Type  MatchType
	Name  string
	Value string
	re    *regexp.Regexp
}

// NewMatcher returns a matcher, or an error for an invalid label name, an
// unknown type or a regular expression that does not compile.
func NewMatcher(t MatchType, name, value string) (*Matcher, error) {
	if !validLabelName(name) {
		return nil, fmt.Errorf("invalid label name %q", name)
	}
	m := &Matcher{Type: t, Name: name, Value: value}
	switch t {
	case MatchEqual, MatchNotEqual:
	case MatchRegexp, MatchNotRegexp:
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return nil, fmt.Errorf("invalid regular expression %q: %w", value, err)
		}
		m.re = re
	default:
		return nil, fmt.Errorf("unknown match type %d", int(t))
	}
	return m, nil
}

// Matches reports whether the label value v satisfies the matcher.
func (m *Matcher) Matches(v string) bool {
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re.MatchString(v)
	case MatchNotRegexp:
		return !m.re.MatchString(v)
	}
	return false
}

// String returns the matcher in the syntax ParseMatchers reads.
func (m *Matcher) String() string {
	return m.Name + m.Type.String() + strconv.Quote(m.Value)
}

// ParseMatchers parses Alertmanager's matcher syntax: one or more matchers
// separated by commas, optionally within braces, such as `alertname="X"` or
// `{severity=~"warning|critical", team!=""}`. Values may be double-quoted,
// with Go escapes, or bare; a bare value ends at the next comma or brace.
func ParseMatchers(s string) ([]*Matcher, error) {
	in := strings.TrimSpace(s)
	if strings.HasPrefix(in, "{") {
		if !strings.HasSuffix(in, "}") {
			return nil, fmt.Errorf("bad matchers %q: missing closing '}'", s)
		}
		in = strings.TrimSpace(in[1 : len(in)-1])
	} else if strings.HasSuffix(in, "}") {
		return nil, fmt.Errorf("bad matchers %q: missing opening '{'", s)
	}
	if in == "" {
		return nil, fmt.Errorf("bad matchers %q: no matchers", s)
	}
	var ms []*Matcher
	for in != "" {
		m, rest, err := parseMatcher(in)
		if err != nil {
			return nil, fmt.Errorf("bad matchers %q: %w", s, err)
		}
		ms = append(ms, m)
		rest = strings.TrimSpace(rest)
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("bad matchers %q: expected ',' before %q", s, rest)
		}
		in = strings.TrimSpace(rest[1:]) // a trailing comma is allowed
	}
	return ms, nil
}

// parseMatcher reads one matcher at the start of s and returns the rest.
func parseMatcher(s string) (*Matcher, string, error) {
	i := 0
	for i < len(s) && isNameByte(s[i]) {
		i++
	}
	name := s[:i]
	rest := strings.TrimLeft(s[i:], " \t")
	if name == "" {
		return nil, "", fmt.Errorf("expected a label name at %q", s)
	}
	var t MatchType
	switch {
	case strings.HasPrefix(rest, "=~"):
		t, rest = MatchRegexp, rest[2:]
	case strings.HasPrefix(rest, "!~"):
		t, rest = MatchNotRegexp, rest[2:]
	case strings.HasPrefix(rest, "!="):
		t, rest = MatchNotEqual, rest[2:]
	case strings.HasPrefix(rest, "="):
		t, rest = MatchEqual, rest[1:]
	default:
		return nil, "", fmt.Errorf("expected an operator (=, !=, =~, !~) after %q", name)
	}
	rest = strings.TrimLeft(rest, " \t")
	var value string
	if strings.HasPrefix(rest, `"`) {
		end := closingQuote(rest)
		if end < 0 {
			return nil, "", fmt.Errorf("unterminated quoted value for %q", name)
		}
		v, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, "", fmt.Errorf("invalid quoted value for %q: %s", name, rest[:end+1])
		}
		value, rest = v, rest[end+1:]
	} else {
		end := strings.IndexAny(rest, ",{}\"")
		if end < 0 {
			end = len(rest)
		}
		if end < len(rest) && rest[end] != ',' {
			return nil, "", fmt.Errorf("unexpected %q in value for %q", rest[end], name)
		}
		value, rest = strings.TrimSpace(rest[:end]), rest[end:]
	}
	m, err := NewMatcher(t, name, value)
	if err != nil {
		return nil, "", err
	}
	return m, rest, nil
}

// closingQuote returns the index of the quote closing the string s starts
// with, skipping escaped characters, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

func isNameByte(b byte) bool {
	return b == '_' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// validLabelName reports whether name is a classic Prometheus label name.
func validLabelName(name string) bool {
	if name == "" || '0' <= name[0] && name[0] <= '9' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return false
		}
	}
	return true
}
