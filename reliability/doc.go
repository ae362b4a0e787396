// Package reliability holds the tests whose figures RELIABILITY.md
// reports: they run the real binaries and try what goes wrong in
// production on them.
package reliability
