// Package cliargs prepares the command lines of modelmon's binaries for
// kingpin.
package cliargs

import "strings"

// JoinDashValues joins each lone "-" to the long flag before it, so that
// `--input -` reads as `--input=-`, stdin. kingpin's lexer turns a lone "-"
// into an argument without its text: `--input - --output p.json` left
// --input empty, and the command failed with "--input and --output are
// required" however the README writes it. Arguments after "--" are left
// alone.
func JoinDashValues(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if a == "-" && len(out) > 0 {
			if prev := out[len(out)-1]; strings.HasPrefix(prev, "--") && !strings.Contains(prev, "=") {
				out[len(out)-1] = prev + "=-"
				continue
			}
		}
		out = append(out, a)
	}
	return out
}
