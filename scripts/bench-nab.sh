#!/usr/bin/env bash
# `make bench-nab`: every anomaly algorithm over the NAB series in
# $NAB_DIR (default ../shared/bench/nab), scored by NAB's rules with its
# scorer. The scores come from the code behind `alertd anomaly score`
# (internal/anomalycli.ScoreFile), run by internal/anomalycli/nabrun.
# Prints the scorer's output per algorithm, then one table: the normalised
# score per profile (null detector 0, perfect 100).
set -euo pipefail
cd "$(dirname "$0")/.."
NAB_DIR=${NAB_DIR:-../shared/bench/nab}
RESULTS=${RESULTS:-$(mktemp -d)}
ALGORITHMS=${ALGORITHMS:-$(go run ./internal/anomalycli/nabrun -list)}
go run ./internal/anomalycli/nabrun -data "$NAB_DIR/data" -out "$RESULTS" -algorithms "$(echo $ALGORITHMS | tr ' ' ,)"
table=""
for a in $ALGORITHMS; do
	out=$(python3 "$NAB_DIR/nabscore.py" "$RESULTS/$a" --cache "$NAB_DIR" --detector "$a")
	echo "$out"
	echo
	row=$(echo "$out" | awk -v a="$a" '
		$1 == "standard" { s = $6 } $1 == "reward_low_FP_rate" { fp = $6 } $1 == "reward_low_FN_rate" { fn = $6 }
		END { printf "| %s | %s | %s | %s |", a, s, fp, fn }')
	table="$table$row"$'\n'
done
echo "| algorithm | standard | reward_low_FP | reward_low_FN |"
echo "|---|---|---|---|"
printf "%s" "$table"
echo "(results in $RESULTS)"
