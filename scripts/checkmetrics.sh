#!/usr/bin/env bash
# Runs `promtool check metrics` (metric and label naming lint) on every golden
# exposition under testdata/. Skips with a clear message when promtool is missing.
# TestMetricsCovered (internal/readmetest) checks that these expositions hold
# every family README.md's metrics tables name.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
	echo "checkmetrics: promtool not found (apt-get install prometheus); skipped"
	exit 0
fi
status=0
while IFS= read -r f; do
	if ! out=$(promtool check metrics <"$f" 2>&1); then
		echo "checkmetrics: $f:"
		echo "$out"
		status=1
	fi
done < <(git ls-files '*.prom' 2>/dev/null | grep testdata/ || find . -path '*/testdata/*.prom')
[ $status -eq 0 ] && echo "checkmetrics: ok"
exit $status
