#!/usr/bin/env bash
# `make run`: the whole story on this machine. An example model server, the
# modelmon sidecar in front of it, a traffic generator that injects a phase of
# failures and then shifts a feature's distribution and posts the ground truth
# of the predictions it got, and alertd on its embedded
# engine scraping the sidecar and evaluating the shipped rules and the demo's
# drift rule. The sidecar sends its payloads on as CloudEvents (the payload
# log) to examples/alert-receiver. The drift alert fires, is classified (data_quality, retrain),
# escalates through two levels of a Slack-compatible receiver and triggers a
# signed retrain webhook; examples/alert-receiver stands in for Slack, the
# webhook and CI, and prints what it gets. A progress line marks each step,
# polled from alertd's API. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PORT=${MODEL_PORT:-8080}
PROXY_PORT=${PROXY_PORT:-8081}
WEB_PORT=${WEB_PORT:-9108}
ALERTD_PORT=${ALERTD_PORT:-9109}
RECEIVER_PORT=${RECEIVER_PORT:-9110}
SHADOW_PORT=${SHADOW_PORT:-8083}
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

# A candidate version of the model, which flags more transactions (its
# intercept is 1 higher): the sidecar mirrors half the predictions to it as
# a shadow and compares its answers with the model's.
bin/model-server --listen-address="127.0.0.1:${SHADOW_PORT}" --delay=3ms --model-version=v2 --bias-shift=1 >"$LOG_DIR/shadow-model-server.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${SHADOW_PORT}/v2/health/ready" shadow-model-server

bin/exporter --proxy.upstream="http://127.0.0.1:${MODEL_PORT}" \
	--proxy.listen-address="127.0.0.1:${PROXY_PORT}" \
	--web.listen-address="127.0.0.1:${WEB_PORT}" \
	--config.file=examples/modelmon.yml --labels.enabled \
	--shadow.upstream="http://127.0.0.1:${SHADOW_PORT}" --shadow.sample-ratio=0.5 \
	--payload-log.url="http://127.0.0.1:${RECEIVER_PORT}/events" --payload-log.extension=namespace=demo \
	--drift.learn-samples=2000 --drift.windows=1m,1h >"$LOG_DIR/exporter.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${WEB_PORT}/-/ready" exporter

bin/alert-receiver --listen-address="127.0.0.1:${RECEIVER_PORT}" --action.secret=demo-secret >"$LOG_DIR/alert-receiver.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${RECEIVER_PORT}/api/auth.test" alert-receiver

# alertd starts from an empty TSDB each time, so the demo's alert fires on
# the same schedule every run.
rm -rf "$LOG_DIR/alertd-data"
sed -e "s/127.0.0.1:9108/127.0.0.1:${WEB_PORT}/; s#http://127.0.0.1:9110/#http://127.0.0.1:${RECEIVER_PORT}/#g" \
	-e "s#\.\./rules/#$(pwd)/rules/#; s#- demo.rules.yml#- $(pwd)/examples/demo.rules.yml#" \
	examples/alertd.yml >"$LOG_DIR/alertd.yml"
bin/alertd --config.file="$LOG_DIR/alertd.yml" \
	--web.listen-address="127.0.0.1:${ALERTD_PORT}" \
	--web.external-url="http://127.0.0.1:${ALERTD_PORT}/" \
	--storage.path="$LOG_DIR/alertd-data" >"$LOG_DIR/alertd.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:${ALERTD_PORT}/-/ready" alertd

# From 20s in, half the predictions fail for three minutes: the sidecar
# counts them and alertd's ModelPredictionErrorRatioHigh (critical: more than
# 25% over 5m, for 1m) fires about a minute and a half in. From DRIFT_START
# seconds on, the mean of amount moves up by 1.5 standard deviations: the sidecar's
# 1m PSI of amount (against the reference it learnt from the first 2000
# records) passes 0.2 within seconds, and the demo's ModelFeatureDrift
# (examples/demo.rules.yml: for 30s) fires about a minute later. The
# ground truth of 80% of the answered predictions reaches the sidecar's
# /v1/labels 10s after their answer: accuracy and calibration.
DRIFT_START=${DRIFT_START:-60}
bin/traffic --target="http://127.0.0.1:${PROXY_PORT}" --rate="${RATE}" \
	--labels.target="http://127.0.0.1:${WEB_PORT}" --labels.ratio=0.8 --labels.delay=10s \
	--fault.ratio=0.5 --fault.start=20s --fault.duration=3m \
	--drift-period=0 --drift.feature=amount --drift.shift=1.5 --drift.start="${DRIFT_START}s" >"$LOG_DIR/traffic.log" 2>&1 &
pids+=($!)

start=$(date +%s)

cat <<TXT

modelmon is running.

  model server (direct)   http://127.0.0.1:${MODEL_PORT}/v1/models/fraud:predict
  shadow model server     http://127.0.0.1:${SHADOW_PORT}   (a candidate v2; the sidecar mirrors half the predictions to it)
  sidecar proxy           http://127.0.0.1:${PROXY_PORT}   (send predictions here)
  sidecar metrics         http://127.0.0.1:${WEB_PORT}/metrics
  push API                http://127.0.0.1:${WEB_PORT}/v1/observations
  labels API              http://127.0.0.1:${WEB_PORT}/v1/labels
  landing page            http://127.0.0.1:${WEB_PORT}/

  alertd                  http://127.0.0.1:${ALERTD_PORT}/   (alerts: /api/v1/alerts, rules: /api/v1/rules,
                          PromQL: /api/v1/query — add it to Grafana as a Prometheus data source)
  incidents               http://127.0.0.1:${ALERTD_PORT}/api/v1/incidents
  action requests         http://127.0.0.1:${ALERTD_PORT}/api/v1/actions/requests
  alertd metrics          http://127.0.0.1:${ALERTD_PORT}/metrics
  Slack, webhook, CI and  examples/alert-receiver on 127.0.0.1:${RECEIVER_PORT} prints what it gets
  the payload log         (the sidecar's CloudEvents go to /events)
                          into ${LOG_DIR}/alert-receiver.log (shown below)

  traffic generator       ${RATE} requests/s to the sidecar; from 20s to 3m20s half of them fail;
                          from ${DRIFT_START}s on, amount shifts up by 1.5 standard deviations;
                          the ground truth of 80% of the answers follows 10s later
                          (logs in ${LOG_DIR}/)

The story, step by step (polled from the sidecar's /metrics and alertd's API):
  drift → ModelFeatureDrift fires → classified data_quality/retrain → Slack #ml-oncall (level 1)
  → retrain webhook verified → 30s later Slack #ml-lead (level 2). About $((DRIFT_START + 90))s.

Try:
  curl -s http://127.0.0.1:${WEB_PORT}/metrics | grep '^modelmon_feature_drift_psi.*window="1m"'
  curl -s http://127.0.0.1:${WEB_PORT}/metrics | grep '^modelmon_prediction_outcome_total'
  curl -s http://127.0.0.1:${WEB_PORT}/metrics | grep '^modelmon_shadow_'
  curl -s http://127.0.0.1:${ALERTD_PORT}/api/v1/incidents
  curl -s http://127.0.0.1:${ALERTD_PORT}/api/v1/actions/requests
  curl -s 'http://127.0.0.1:${ALERTD_PORT}/api/v1/query?query=model:modelmon_prediction_errors_per_request:ratio_rate5m'

Press Ctrl-C to stop.

TXT

# Progress: each step is printed once, with the time since the start. The
# APIs' JSON is compact, one object per alert, incident or request, so awk
# splits it into lines and grep picks the fields (no jq needed; bash 3 and
# BSD tools do).
done=" "
did() { case "$done" in *" $1 "*) return 0 ;; esac; return 1; }
step() { # key, message
	if ! did "$1"; then
		done="$done$1 "
		local t=$(($(date +%s) - start))
		printf '[%2dm%02ds] ✔ %s\n' $((t / 60)) $((t % 60)) "$2"
	fi
}
field() { grep -o "\"$1\":\"[^\"]*\"" | head -1 | sed 's/.*:"\(.*\)"/\1/'; }
split() { awk -v s="$1" '{ out = ""; while ((i = index($0, s)) > 0) { out = out substr($0, 1, i - 1) "\n" s; $0 = substr($0, i + length(s)) } print out $0 }'; }
api() { curl -fsS "http://127.0.0.1:${ALERTD_PORT}$1" 2>/dev/null || true; }

# A grep that finds nothing is no error here.
set +e +o pipefail
shown=0
last_status=0
while true; do
	for p in "${pids[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "a process exited; see ${LOG_DIR}/*.log" >&2
			exit 1
		fi
	done
	sleep 2
	now=$(date +%s)

	if [ $((now - start)) -ge "${DRIFT_START}" ]; then
		step shift "traffic: amount shifts up by 1.5 standard deviations (--drift.shift, from ${DRIFT_START}s)"
	fi
	psi=$(curl -fsS "http://127.0.0.1:${WEB_PORT}/metrics" 2>/dev/null | awk '/^modelmon_feature_drift_psi\{feature="amount",.*window="1m"\}/{print $2}')
	if [ -n "$psi" ] && awk -v v="$psi" 'BEGIN{exit !(v > 0.2)}'; then
		step psi "sidecar: PSI of amount over the last minute is $(printf '%.2f' "$psi"), above 0.2 (modelmon_feature_drift_psi)"
	fi

	# Accuracy and expected calibration error of the predictions joined to
	# their label, from the sidecar's counters (what the recording rules of
	# deploy/prometheus/quality.rules.yml compute over replicas).
	quality=$(curl -fsS "http://127.0.0.1:${WEB_PORT}/metrics" 2>/dev/null | awk '
		/^modelmon_prediction_outcome_total/ { n += $2 }
		/^modelmon_prediction_correct_total/ { c += $2 }
		/^modelmon_prediction_confidence_(outcomes|correct)?_?total\{/ {
			match($0, /bin="[0-9]*"/); b = substr($0, RSTART + 5, RLENGTH - 6)
			if ($0 ~ /^modelmon_prediction_confidence_correct_total/) right[b] += $2
			else if ($0 ~ /^modelmon_prediction_confidence_total/) conf[b] += $2
			else m += $2
		}
		END {
			if (n < 500 || m == 0) exit
			for (b in conf) { d = right[b] - conf[b]; e += (d < 0 ? -d : d) }
			printf "%d labels joined: accuracy %.3f, expected calibration error %.3f", n, c / n, e / m
		}')
	if [ -n "$quality" ]; then
		step quality "sidecar: $quality (modelmon_prediction_confidence_*)"
	fi

	# The shadow's comparison (rules/shadow.rules.yml computes the rate).
	shadow=$(curl -fsS "http://127.0.0.1:${WEB_PORT}/metrics" 2>/dev/null | awk '
		/^modelmon_shadow_predictions_total/ { n += $2 }
		/^modelmon_shadow_disagreements_total/ { d += $2 }
		/^modelmon_shadow_absolute_difference_total/ { a += $2 }
		END { if (n >= 500) printf "%d predictions compared with the shadow (candidate v2): %.1f%% would change class, mean score difference %.3f", n, 100 * d / n, a / n }')
	if [ -n "$shadow" ]; then
		step shadow "sidecar: $shadow (modelmon_shadow_*)"
	fi

	# The payload log: each captured prediction as two CloudEvents.
	plog=$(curl -fsS "http://127.0.0.1:${WEB_PORT}/metrics" 2>/dev/null | awk '
		/^modelmon_payload_log_events_sent_total/ { n += $2 }
		/^modelmon_payload_log_events_dropped_total/ { d += $2 }
		END { if (n >= 500) printf "%d payload events sent as CloudEvents to the payload log, %d dropped", n, d }')
	if [ -n "$plog" ]; then
		step plog "sidecar: $plog (modelmon_payload_log_*)"
	fi

	alerts=$(api /api/v1/alerts | split '{"labels":')
	if echo "$alerts" | grep '"alertname":"ModelPredictionErrorRatioHigh"' | grep -q '"state":"firing"'; then
		step errors "alertd: ModelPredictionErrorRatioHigh fires (the fault phase: half the predictions fail)"
	fi
	drift=$(echo "$alerts" | grep '"alertname":"ModelFeatureDrift"' | grep '"state":"firing"' | head -1)
	if [ -n "$drift" ]; then
		ann=$(echo "$drift" | grep -o '"annotations":{[^}]*}')
		step firing "alertd: ModelFeatureDrift fires for feature $(echo "$drift" | field feature) of model $(echo "$drift" | field model)"
		if [ -n "$(echo "$ann" | field action)" ]; then
			step classified "alertd: classified category=$(echo "$ann" | field category) priority=$(echo "$ann" | field priority) action=$(echo "$ann" | field action)"
		fi
	fi

	incident=$(api /api/v1/incidents | split '{"id":' | grep '"groupLabels":{"alertname":"ModelFeatureDrift"' | head -1)
	if [ -n "$incident" ]; then
		id=$(echo "$incident" | field id)
		level=$(echo "$incident" | grep -o '"level":[0-9]*' | head -1 | cut -d: -f2)
		if [ "${level:-0}" -ge 1 ]; then
			step level1 "alertd: incident $id escalates by policy $(echo "$incident" | field policy) to level 1 (notify ml-oncall; next step at $(echo "$incident" | field nextStepAt | cut -c12-19))"
		fi
		if [ "${level:-0}" -ge 2 ]; then
			step level2 "alertd: incident $id escalates to level 2 (notify ml-lead), nobody acknowledged"
		fi
	fi

	retrain=$(api '/api/v1/actions/requests?action=retrain-fraud' | split '{"id":' | grep '"state":"delivered"' | tail -1)
	if [ -n "$retrain" ]; then
		step retrain "alertd: action retrain-fraud delivered (request $(echo "$retrain" | field id), model $(echo "$retrain" | field model))"
	fi

	log="$LOG_DIR/alert-receiver.log"
	if grep -q 'slack chat.postMessage #ml-oncall' "$log" 2>/dev/null; then
		step slack1 "receiver: Slack-compatible #ml-oncall got the message (chat.postMessage)"
	fi
	if grep -q 'slack chat.postMessage #ml-lead' "$log" 2>/dev/null; then
		step slack2 "receiver: Slack-compatible #ml-lead got the message (chat.postMessage)"
	fi
	if grep -q 'action retrain-fraud VERIFIED' "$log" 2>/dev/null; then
		step verified "receiver: retrain webhook's signature verified; the retrain would run"
	fi
	tail -n +$((shown + 1)) "$log" 2>/dev/null | sed 's/^/           receiver: /'
	shown=$(wc -l <"$log" 2>/dev/null || echo 0)

	if did level2 && did slack2 && did verified && did classified && ! did end; then
		t=$(($(date +%s) - start))
		if [ "${EXIT_WHEN_DONE:-0}" = 1 ]; then
			step end "the story is complete in $((t / 60))m$((t % 60))s (EXIT_WHEN_DONE=1: stopping)"
			exit 0
		fi
		step end "the story is complete in $((t / 60))m$((t % 60))s; still running — look at the links above, Ctrl-C stops"
	fi
	if [ $((now - last_status)) -ge 30 ]; then
		last_status=$now
		printf '%s  %s  %s\n' "$(date +%T)" \
			"$(curl -fsS "http://127.0.0.1:${WEB_PORT}/metrics" 2>/dev/null | awk '/^modelmon_requests_total/{r+=$2} /^modelmon_predictions_total/{p+=$2} /^modelmon_prediction_errors_total/{e+=$2} /^modelmon_labels_matched_total/{l+=$2} END{printf "requests=%d predictions=%d errors=%d labels=%d", r, p, e, l}')" \
			"$(curl -fsS "http://127.0.0.1:${ALERTD_PORT}/metrics" 2>/dev/null | awk '/^alertd_alerts\{/ && /state="firing"/{f+=$2} /^alertd_notifications_total\{/{n+=$2} END{printf "alerts_firing=%d notifications=%d", f, n}')"
	fi
done
