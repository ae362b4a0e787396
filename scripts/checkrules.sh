#!/usr/bin/env bash
# `make checkrules`: `promtool check rules` on every shipped rule file
# (deploy/prometheus/ and the default alerts in rules/), `promtool test rules` on
# the unit tests next to the alerts and on those of the golden rules of
# `exporter rules`, a check that every alert in rules/ has a test, and a
# check that every alert in rules/ and every alert `exporter alerts` writes
# (from internal/driftcli/testdata/alerts.yml, which sets every threshold and
# objective) has a category label, a runbook_url pointing at its own section
# of docs/runbooks.md, and that section. Skips with a clear message when
# promtool is missing.
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

# The quality and SLO alerts `exporter alerts` writes.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
generated="$tmp/alerts.rules.yml"
"${GO:-go}" run ./cmd/exporter alerts --config.file=internal/driftcli/testdata/alerts.yml --output="$generated"
promtool check rules "$generated"

status=0
for alert in $(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' rules/*.rules.yml | sort -u); do
	if ! grep -q "alertname: *$alert *\$" rules/*.test.yml; then
		echo "checkrules: alert $alert has no test in rules/*.test.yml"
		status=1
	fi
done
# Each alert has a section in docs/runbooks.md, its runbook_url points to it
# (GitHub's anchor: the heading in lowercase), and its category label is one
# of those alertd's classifier maps (classify package) that the runbooks'
# introduction lists.
while read -r file alert url category; do
	if ! grep -q "^## $alert\$" docs/runbooks.md; then
		echo "checkrules: alert $alert ($file) has no section in docs/runbooks.md"
		status=1
	fi
	anchor=$(echo "$alert" | tr '[:upper:]' '[:lower:]')
	if [ "$url" != "https://github.com/modelmon/modelmon/blob/main/docs/runbooks.md#$anchor" ]; then
		echo "checkrules: alert $alert ($file) has runbook_url $url, want docs/runbooks.md#$anchor"
		status=1
	fi
	case "$category" in
	availability | performance | drift | accuracy | data_quality) ;;
	*)
		echo "checkrules: alert $alert ($file) has category $category, want availability, performance, drift, accuracy or data_quality"
		status=1
		;;
	esac
done < <(awk -v generated="$generated" '
	function flush() {
		if (alert != "") print (file == generated ? "exporter-alerts" : file), alert, (url == "" ? "none" : url), (category == "" ? "none" : category)
		alert = ""; url = ""; category = ""
	}
	FNR == 1 { flush() }
	/^ *- (alert|record):/ { flush() }
	/^ *- alert:/ { alert = $3; file = FILENAME }
	/^ *runbook_url:/ { url = $2 }
	/^ *category:/ { category = $2 }
	END { flush() }
' rules/*.rules.yml "$generated")
[ $status -eq 0 ] && echo "checkrules: ok"
exit $status
