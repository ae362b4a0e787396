#!/usr/bin/env bash
# `make run`: an example model server, the modelmon sidecar in front of it and a
# traffic generator, all on this machine. Prints where to look; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PORT=${MODEL_PORT:-8080}
PROXY_PORT=${PROXY_PORT:-8081}
WEB_PORT=${WEB_PORT:-9108}
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

bin/traffic --target="http://127.0.0.1:${PROXY_PORT}" --rate="${RATE}" >"$LOG_DIR/traffic.log" 2>&1 &
pids+=($!)

cat <<TXT

modelmon is running.

  model server (direct)   http://127.0.0.1:${MODEL_PORT}/v1/models/fraud:predict
  sidecar proxy           http://127.0.0.1:${PROXY_PORT}   (send predictions here)
  sidecar metrics         http://127.0.0.1:${WEB_PORT}/metrics
  push API                http://127.0.0.1:${WEB_PORT}/v1/observations
  landing page            http://127.0.0.1:${WEB_PORT}/

  traffic generator       ${RATE} requests/s to the sidecar (logs in ${LOG_DIR}/)

Try:
  curl -s http://127.0.0.1:${WEB_PORT}/metrics | grep '^modelmon_'
  curl -s -XPOST http://127.0.0.1:${PROXY_PORT}/v1/models/fraud:predict -d '{"instances":[{"amount":120.5,"age":41}]}'

Press Ctrl-C to stop.
TXT

while true; do
	for p in "${pids[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "a process exited; see ${LOG_DIR}/*.log" >&2
			exit 1
		fi
	done
	sleep 5
	printf '%s  %s\n' "$(date +%T)" "$(curl -fsS "http://127.0.0.1:${WEB_PORT}/metrics" 2>/dev/null | awk '/^modelmon_requests_total/{r+=$2} /^modelmon_predictions_total/{p+=$2} /^modelmon_prediction_errors_total/{e+=$2} END{printf "requests=%d predictions=%d errors=%d", r, p, e}')"
done
