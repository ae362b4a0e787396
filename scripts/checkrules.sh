#!/usr/bin/env bash
# `make checkrules`: `promtool check rules` on every shipped rule file
# (deploy/prometheus/ and the default alerts in rules/), `promtool test rules` on
# the unit tests next to the alerts and on those of the golden rules of
# `exporter rules`, and a check that every alert in rules/ has a test and a
# runbook section. Skips with a clear message when promtool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
	echo "checkrules: promtool not found (apt-get install prometheus); skipped"
	exit 0
fi
promtool check rules deploy/prometheus/*.rules.yml rules/*.rules.yml
promtool test rules rules/*.test.yml
# The fleet PSI rules `exporter rules` writes, as its golden file.
promtool test rules internal/driftcli/testdata/rules.golden.test.yml

status=0
for alert in $(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' rules/*.rules.yml | sort -u); do
	if ! grep -q "alertname: *$alert *\$" rules/*.test.yml; then
		echo "checkrules: alert $alert has no test in rules/*.test.yml"
		status=1
	fi
	if ! grep -q "^## $alert\$" docs/runbooks.md; then
		echo "checkrules: alert $alert has no section in docs/runbooks.md"
		status=1
	fi
done
# Each alert's runbook_url points to its own section (GitHub's anchor: the
# heading in lowercase).
while read -r alert url; do
	anchor=$(echo "$alert" | tr '[:upper:]' '[:lower:]')
	if [ "$url" != "https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#$anchor" ]; then
		echo "checkrules: alert $alert has runbook_url ${url:-(none)}, want docs/runbooks.md#$anchor"
		status=1
	fi
done < <(awk '
	/^ *- (alert|record):/ { if (alert != "") print alert, url; alert = ""; url = "" }
	/^ *- alert:/ { alert = $3 }
	/^ *runbook_url:/ { url = $2 }
	END { if (alert != "") print alert, url }
' rules/*.rules.yml)
[ $status -eq 0 ] && echo "checkrules: ok"
exit $status
