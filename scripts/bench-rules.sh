#!/usr/bin/env bash
# `make bench-rules`: 1,000 alerting rules over 10,000 series, evaluated on
# the same data by Prometheus's own rule manager and by alertd, in one run.
# Prints each run, then the median time per evaluation of all rules, the
# alertd/Prometheus ratio, the heap in use and the allocations.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-20x}
out=$(go test -run '^$' -bench '^BenchmarkRuleEvaluation$' -benchmem -benchtime="$BENCHTIME" -count="$COUNT" -timeout 30m ./internal/alertd/)
echo "$out" | grep -E '^(goos|goarch|cpu|Benchmark)'
echo "$out" | awk '
/^BenchmarkRuleEvaluation\// {
	split($1, p, "/"); name = p[2]; sub(/-[0-9]+$/, "", name)
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "ns/op") ns[name] = ns[name] " " $i
		if ($(i+1) == "heap-MiB") heap[name] = $i
		if ($(i+1) == "allocs/op") allocs[name] = $i
		if ($(i+1) == "B/op") bytes[name] = $i
	}
}
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	if (!("prometheus" in ns) || !("alertd" in ns)) { print "missing results" > "/dev/stderr"; exit 1 }
	mp = median(ns["prometheus"]); ma = median(ns["alertd"])
	printf "\n%-12s %14s %12s %14s %12s\n", "", "ms/evaluation", "heap MiB", "MB alloc/eval", "allocs/eval"
	printf "%-12s %14.1f %12.1f %14.1f %12d\n", "prometheus", mp / 1e6, heap["prometheus"], bytes["prometheus"] / 1e6, allocs["prometheus"]
	printf "%-12s %14.1f %12.1f %14.1f %12d\n", "alertd", ma / 1e6, heap["alertd"], bytes["alertd"] / 1e6, allocs["alertd"]
	printf "\nalertd / prometheus time ratio: %.2f (target: at most 1.20)\n", ma / mp
}'
