// Package matcher parses and applies label matchers in Alertmanager's
// syntax (name="value", !=, =~, !~; several separated by commas, optionally
// in braces), with Alertmanager's semantics: regular expressions are fully
// anchored, and a missing label matches as the empty string.
//
// It is pure (standard library only) so the pure core packages (classify,
// escalate) can share it.
package matcher
