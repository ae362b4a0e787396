package matcher

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMatchers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // String() of each matcher
		err  string
	}{
		{in: `alertname="ModelDrift"`, want: []string{`alertname="ModelDrift"`}},
		{in: `alertname=ModelDrift`, want: []string{`alertname="ModelDrift"`}},
		{in: ` alertname = ModelDrift `, want: []string{`alertname="ModelDrift"`}},
		{in: `{a="b", c!="d",e=~"f.*", g!~"h|i"}`, want: []string{`a="b"`, `c!="d"`, `e=~"f.*"`, `g!~"h|i"`}},
		{in: `a="b",`, want: []string{`a="b"`}},
		{in: `a=""`, want: []string{`a=""`}},
		{in: `a=`, want: []string{`a=""`}},
		{in: `a="x,y}"`, want: []string{`a="x,y}"`}},
		{in: `a="say \"hi\"\n"`, want: []string{`a="say \"hi\"\n"`}},
		{in: `{}`, err: `bad matchers "{}": no matchers`},
		{in: ``, err: `bad matchers "": no matchers`},
		{in: `{a="b"`, err: `bad matchers "{a=\"b\"": missing closing '}'`},
		{in: `a="b"}`, err: `bad matchers "a=\"b\"}": missing opening '{'`},
		{in: `a`, err: `bad matchers "a": expected an operator (=, !=, =~, !~) after "a"`},
		{in: `a=="b"`, err: `bad matchers "a==\"b\"": unexpected '"' in value for "a"`},
		{in: `="b"`, err: `bad matchers "=\"b\"": expected a label name at "=\"b\""`},
		{in: `a-b="c"`, err: `bad matchers "a-b=\"c\"": expected an operator (=, !=, =~, !~) after "a"`},
		{in: `1a="b"`, err: `bad matchers "1a=\"b\"": invalid label name "1a"`},
		{in: `a="b`, err: `bad matchers "a=\"b": unterminated quoted value for "a"`},
		{in: `a="b\q"`, err: `bad matchers "a=\"b\\q\"": invalid quoted value for "a": "b\q"`},
		{in: `a="b" c="d"`, err: `bad matchers "a=\"b\" c=\"d\"": expected ',' before "c=\"d\""`},
		{in: `a=~"("`, err: "bad matchers \"a=~\\\"(\\\"\": invalid regular expression \"(\": error parsing regexp: missing closing ): `^(?:()$`"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ms, err := ParseMatchers(tc.in)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, m := range ms {
				got = append(got, m.String())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestMatcherMatches(t *testing.T) {
	for _, tc := range []struct {
		matcher string
		value   string
		want    bool
	}{
		{`a="b"`, "b", true},
		{`a="b"`, "bc", false},
		{`a!="b"`, "c", true},
		{`a!="b"`, "b", false},
		{`a=""`, "", true}, // a missing label matches the empty value
		// Regular expressions are anchored at both ends.
		{`a=~"b.*"`, "bcd", true},
		{`a=~"b"`, "abc", false},
		{`a=~"b|c"`, "c", true},
		{`a!~"b|c"`, "bc", true},
		{`a!~"b.*"`, "bcd", false},
		{`a=~".+"`, "", false},
	} {
		ms, err := ParseMatchers(tc.matcher)
		require.NoError(t, err)
		require.Equal(t, tc.want, ms[0].Matches(tc.value), "%s on %q", tc.matcher, tc.value)
	}
	_, err := NewMatcher(MatchType(7), "a", "b")
	require.EqualError(t, err, "unknown match type 7")
	require.Equal(t, "MatchType(7)", MatchType(7).String())
}

// FuzzParseMatchers checks that no input crashes the parser and that what it
// accepts prints back to matchers that parse the same.
func FuzzParseMatchers(f *testing.F) {
	for _, s := range []string{`a="b"`, `{a=~"b|c", d!~"e"}`, `a=b,`, `a="\"`, `{`, `a=~"("`, `a="b\q"`, `=`, "a=\"\xff\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMatchers(s)
		if err != nil {
			return
		}
		for _, m := range ms {
			back, err := ParseMatchers(m.String())
			if err != nil || len(back) != 1 || back[0].String() != m.String() {
				t.Fatalf("%q: %s does not round-trip: %v", s, m, err)
			}
		}
	})
}
