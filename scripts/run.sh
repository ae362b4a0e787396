#!/usr/bin/env bash
# `make run`: an example model server, the modelmon sidecar in front of it, a
# traffic generator that injects a phase of failures, and alertd on its
# embedded engine scraping the sidecar and evaluating the shipped rules, with a
# webhook receiver that prints the notifications. All on this machine. Prints
# where to look; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PORT=${MODEL_PORT:-8080}
PROXY_PORT=${PROXY_PORT:-8081}
WEB_PORT=${WEB_PORT:-9108}
ALERTD_PORT=${ALERTD_PORT:-9109}
RECEIVER_PORT=${RECEIVER_PORT:-9110}
RATE=${RATE:-20}
LOG_DIR=${LOG_DIR:-.run}
mkdir -p "$LOG_DIR"

pids=()
cleanup() {
	trap - EXIT INT TERM
	echo
	echo "Stopping…"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

wait_http() { # url, name
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$2 did not come up; see $LOG_DIR/$2.log" >&2
	exit 1
}

bin/model-server --listen-address="127.0.0.1:${MODEL_PORT}" --delay=2ms >"$LOG_DIR/model-server.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${MODEL_PORT}/v2/health/ready" model-server

bin/exporter --proxy.upstream="http://127.0.0.1:${MODEL_PORT}" \
	--proxy.listen-address="127.0.0.1:${PROXY_PORT}" \
	--web.listen-address="127.0.0.1:${WEB_PORT}" \
	--config.file=examples/modelmon.yml >"$LOG_DIR/exporter.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${WEB_PORT}/-/ready" exporter

bin/alert-receiver --listen-address="127.0.0.1:${RECEIVER_PORT}" >"$LOG_DIR/alert-receiver.log" 2>&1 &
pids+=($!)

# alertd starts from an empty TSDB each time, so the demo's alert fires on
# the same schedule every run.
rm -rf "$LOG_DIR/alertd-data"
sed -e "s/127.0.0.1:9108/127.0.0.1:${WEB_PORT}/; s#http://127.0.0.1:9110/#http://127.0.0.1:${RECEIVER_PORT}/#; s#\.\./rules/#$(pwd)/rules/#" \
	examples/alertd.yml >"$LOG_DIR/alertd.yml"
bin/alertd --config.file="$LOG_DIR/alertd.yml" \
	--web.listen-address="127.0.0.1:${ALERTD_PORT}" \
	--web.external-url="http://127.0.0.1:${ALERTD_PORT}/" \
	--storage.path="$LOG_DIR/alertd-data" >"$LOG_DIR/alertd.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${ALERTD_PORT}/-/ready" alertd

# From 20s in, half the predictions fail for three minutes: the sidecar
# counts them and alertd's ModelPredictionErrorRatioHigh (critical: more than
# 25% over 5m, for 1m) fires about a minute and a half in.
bin/traffic --target="http://127.0.0.1:${PROXY_PORT}" --rate="${RATE}" \
	--fault.ratio=0.5 --fault.start=20s --fault.duration=3m >"$LOG_DIR/traffic.log" 2>&1 &
pids+=($!)

cat <<TXT

modelmon is running.

  model server (direct)   http://127.0.0.1:${MODEL_PORT}/v1/models/fraud:predict
  sidecar proxy           http://127.0.0.1:${PROXY_PORT}   (send predictions here)
  sidecar metrics         http://127.0.0.1:${WEB_PORT}/metrics
  push API                http://127.0.0.1:${WEB_PORT}/v1/observations
  landing page            http://127.0.0.1:${WEB_PORT}/

  alertd                  http://127.0.0.1:${ALERTD_PORT}/   (alerts: /api/v1/alerts, rules: /api/v1/rules,
                          PromQL: /api/v1/query — add it to Grafana as a Prometheus data source)
  notifications           printed by the webhook receiver into ${LOG_DIR}/alert-receiver.log

  traffic generator       ${RATE} requests/s to the sidecar; from 20s to 3m20s half of them fail
                          (logs in ${LOG_DIR}/)

Try:
  curl -s http://127.0.0.1:${WEB_PORT}/metrics | grep '^modelmon_'
  curl -s http://127.0.0.1:${ALERTD_PORT}/api/v1/alerts
  curl -s 'http://127.0.0.1:${ALERTD_PORT}/api/v1/query?query=model:modelmon_prediction_errors_per_request:ratio_rate5m'
  curl -s -XPOST http://127.0.0.1:${PROXY_PORT}/v1/models/fraud:predict -d '{"instances":[{"amount":120.5,"age":41}]}'

Press Ctrl-C to stop.
TXT

shown=0
while true; do
	for p in "${pids[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "a process exited; see ${LOG_DIR}/*.log" >&2
			exit 1
		fi
	done
	sleep 5
	printf '%s  %s  %s\n' "$(date +%T)" \
		"$(curl -fsS "http://127.0.0.1:${WEB_PORT}/metrics" 2>/dev/null | awk '/^modelmon_requests_total/{r+=$2} /^modelmon_predictions_total/{p+=$2} /^modelmon_prediction_errors_total/{e+=$2} END{printf "requests=%d predictions=%d errors=%d", r, p, e}')" \
		"$(curl -fsS "http://127.0.0.1:${ALERTD_PORT}/metrics" 2>/dev/null | awk '/^alertd_alerts\{state="firing"\}/{f=$2} /^alertd_notifications_total\{integration="webhook"\}/{n=$2} END{printf "alerts_firing=%d notifications=%d", f, n}')"
	tail -n +$((shown + 1)) "$LOG_DIR/alert-receiver.log" 2>/dev/null | sed 's/^/  notification: /'
	shown=$(wc -l <"$LOG_DIR/alert-receiver.log" 2>/dev/null || echo 0)
done
