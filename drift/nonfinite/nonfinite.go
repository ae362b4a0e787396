// Package nonfinite reads the words NaN, Infinity and -Infinity that
// Python's json module (and so pandas' missing values) writes for numbers
// that JSON has no literal for, and that encoding/json refuses. Quote
// turns each such word outside a JSON string into a string that stands
// for it, which encoding/json decodes; Value tells the number such a
// string stands for, Word the word it replaced, and String the string for
// a number. The push API and drift.ReadJSONL read JSON through it, so that
// a record with such a value is read, and the value counted as a NaN or an
// infinity, rather than the whole record refused; drift keeps such
// strings in categorical columns, apart from the text "NaN".
package nonfinite

import (
	"bytes"
	"math"
)

// Mark starts, in JSON, the strings Quote puts in place of the words. A
// NUL character starts no feature value or class a model sends.
const Mark = `"\u0000`

// words are the words, the strings that stand for them (quoted, and
// decoded) and their numbers.
var words = [...]struct {
	word, quoted, str string
	value             float64
}{
	{"-Infinity", Mark + `-Inf"`, "\x00-Inf", math.Inf(-1)},
	{"Infinity", Mark + `+Inf"`, "\x00+Inf", math.Inf(1)},
	{"NaN", Mark + `NaN"`, "\x00NaN", math.NaN()},
}

// Quote returns b with each NaN, Infinity and -Infinity outside JSON
// strings replaced by the string that stands for it. Outside strings, JSON
// has no other words that start with those letters. b is returned as it is
// when it has none.
func Quote(b []byte) []byte {
	if !bytes.Contains(b, []byte("NaN")) && !bytes.Contains(b, []byte("Infinity")) {
		return b
	}
	var out []byte
	last := 0
	for i := 0; i < len(b); i++ {
		if b[i] == '"' {
			i = StringEnd(b, i+1) // a string's words are its own
			continue
		}
		for _, w := range words {
			if bytes.HasPrefix(b[i:], []byte(w.word)) {
				out = append(append(out, b[last:i]...), w.quoted...)
				i += len(w.word) - 1
				last = i + 1
				break
			}
		}
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// Value returns the number a string Quote put in place of a word stands
// for, once decoded; ok is false for any other string.
func Value(s string) (v float64, ok bool) {
	if len(s) == 0 || s[0] != 0 {
		return 0, false
	}
	for _, w := range words {
		if s == w.str {
			return w.value, true
		}
	}
	return 0, false
}

// String returns the string that stands for v, a NaN or an infinity, as
// the strings Quote puts in place of the words decode: the string Value
// reads back as v. ok is false for a finite v.
func String(v float64) (s string, ok bool) {
	switch {
	case math.IsNaN(v):
		return words[2].str, true
	case math.IsInf(v, 1):
		return words[1].str, true
	case math.IsInf(v, -1):
		return words[0].str, true
	}
	return "", false
}

// Word returns the word a string Quote put in place of one replaced, once
// decoded; ok is false for any other string.
func Word(s string) (word string, ok bool) {
	if len(s) == 0 || s[0] != 0 {
		return "", false
	}
	for _, w := range words {
		if s == w.str {
			return w.word, true
		}
	}
	return "", false
}

// StringEnd returns the index of the quote that ends the JSON string whose
// text starts at b[start], or len(b)-1 when none does.
func StringEnd(b []byte, start int) int {
	for i := start; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b) - 1
		}
		j += i
		escapes := 0
		for k := j - 1; k >= start && b[k] == '\\'; k-- {
			escapes++
		}
		if escapes%2 == 0 {
			return j
		}
		i = j + 1
	}
}

// Offset returns the offset, in the text Quote was given, of offset off in
// q, the text Quote returned: where a syntax error of q is in the text as
// it was written.
func Offset(q []byte, off int64) int64 {
	if off < 0 || off > int64(len(q)) {
		return off
	}
	out := off
	for _, w := range words {
		out -= int64(bytes.Count(q[:off], []byte(w.quoted)) * (len(w.quoted) - len(w.word)))
	}
	return out
}
