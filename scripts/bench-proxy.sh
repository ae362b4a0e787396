#!/usr/bin/env bash
# bench-proxy.sh (make bench-proxy): what the modelmon sidecar costs in front of
# a model server, next to nginx as a plain reverse proxy, in one run against the
# same stub model server (examples/model-server):
#
#   direct    wrk → stub
#   sidecar   wrk → exporter (payload capture and parsing on) → stub
#   nginx     wrk → nginx (1 worker, upstream keep-alive) → stub
#   fasthttp  wrk → a bare fasthttp reverse proxy (scripts/bench/bareproxy: no
#             metrics, no capture) → stub, the floor the sidecar is built on
#
# for each model service time in DELAYS and each connection count in CONNECTIONS.
# wrk runs on CPU WRK_CPU and every server on CPU SERVER_CPU (taskset). Each
# point is measured ROUNDS times, the paths taking turns within each round, so
# that a spell when the machine is slower falls on every path alike; each path
# is reported by its median round. Every measured run follows a warm-up run.
# The Markdown report, which ends with the sidecar against nginx and the
# targets it is held to, goes to stdout and to OUT. Every process the script
# starts is stopped on exit.
#
# Settings (environment), with their defaults:
#   DURATION=5s WARMUP=1s          measured and warm-up run of each point and round
#   ROUNDS=3                       rounds of each point
#   DELAYS="0ms 1ms"               stub service times (model-server --delay)
#   CONNECTIONS="2 16"             wrk connections
#   THREADS=1                      wrk threads (at most the connections)
#   PATHS="direct sidecar nginx fasthttp"   paths to measure
#   OUT=bench-proxy-results.md     report file
#   WRK_CPU=0 SERVER_CPU=1         CPU pinning
#   STUB_PORT=18080 SIDECAR_PORT=18081 NGINX_PORT=18082 METRICS_PORT=19108 BARE_PORT=18083
#   EXPORTER_CONFIG=examples/modelmon.yml   (empty: the exporter's defaults)
#   EXPORTER_FLAGS=                extra exporter flags (--no-proxy.raw-syscalls, say)
#   BARE_FLAGS=                    extra bareproxy flags (--raw-syscalls, say)
#   SYSCALL_DURATION=3s            extra run per proxy point that counts its system
#                                  calls with perf (0: none; skipped without perf)
#   KEEP_LOGS=                     non-empty keeps the logs in the temp dir
set -euo pipefail

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
DELAYS=${DELAYS:-0ms 1ms}
CONNECTIONS=${CONNECTIONS:-2 16}
# wrk has one core; a second thread on it only adds context switches.
THREADS=${THREADS:-1}
PATHS=${PATHS:-direct sidecar nginx fasthttp}
BARE_PORT=${BARE_PORT:-18083}
OUT=${OUT:-bench-proxy-results.md}
WRK_CPU=${WRK_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
# Not the demo's ports (8080, 8081, 9108), so that `make run` can stay up.
STUB_PORT=${STUB_PORT:-18080}
SIDECAR_PORT=${SIDECAR_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
METRICS_PORT=${METRICS_PORT:-19108}
EXPORTER_CONFIG=${EXPORTER_CONFIG-examples/modelmon.yml}
EXPORTER_FLAGS=${EXPORTER_FLAGS:-}
BARE_FLAGS=${BARE_FLAGS:-}
KEEP_LOGS=${KEEP_LOGS:-}
SYSCALL_DURATION=${SYSCALL_DURATION:-3s}

COMMAND="DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS DELAYS='$DELAYS' CONNECTIONS='$CONNECTIONS' THREADS=$THREADS"
COMMAND+=" PATHS='$PATHS' WRK_CPU=$WRK_CPU SERVER_CPU=$SERVER_CPU EXPORTER_CONFIG='$EXPORTER_CONFIG'"
COMMAND+=" EXPORTER_FLAGS='$EXPORTER_FLAGS' BARE_FLAGS='$BARE_FLAGS' SYSCALL_DURATION=$SYSCALL_DURATION bash scripts/bench-proxy.sh"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench-proxy: ROUNDS must be a positive integer, not '$ROUNDS'" >&2; exit 1; }
OUT=$(realpath -m -- "$OUT") # OUT is relative to where the script was started.
cd "$(dirname "$0")/.."

LUA=scripts/bench/kserve.lua
BODY=scripts/bench/kserve.json
REQUEST_PATH=/v1/models/fraud:predict

log() { printf 'bench-proxy: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

# --- Tools and machine -----------------------------------------------------------

find_tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
missing=()
for tool in wrk:wrk nginx:nginx taskset:util-linux curl:curl pgrep:procps; do
	[ -n "$(find_tool "${tool%%:*}")" ] || missing+=("${tool##*:}")
done
if ((${#missing[@]})); then
	die "missing tools; install them with: apt-get install -y ${missing[*]}"
fi
command -v go >/dev/null || die "go is not on PATH"
NGINX=$(find_tool nginx)
# perf counts the proxies' system calls and context switches; without it, or
# where it may not trace them, those columns stay empty.
PERF=$(find_tool perf)
SYSCALL_NOTE=
if [[ $SYSCALL_DURATION == 0 ]]; then
	PERF=
	SYSCALL_NOTE="not counted: SYSCALL_DURATION=0"
elif [ -z "$PERF" ]; then
	SYSCALL_NOTE="not counted: perf is not installed (apt-get install -y linux-perf)"
elif ! "$PERF" stat -x, -e raw_syscalls:sys_enter,context-switches -o /dev/null -- true >/dev/null 2>&1; then
	PERF=
	SYSCALL_NOTE="not counted: perf may not trace system calls here (see /proc/sys/kernel/perf_event_paranoid)"
fi

CPUS=$(nproc)
if ((CPUS < 2)); then
	log "only $CPUS CPU: wrk and the servers share CPU 0, so the numbers mean little"
	WRK_CPU=0
	SERVER_CPU=0
fi
for port in "$STUB_PORT" "$SIDECAR_PORT" "$NGINX_PORT" "$METRICS_PORT" "$BARE_PORT"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		die "port $port is in use; set STUB_PORT, SIDECAR_PORT, NGINX_PORT, METRICS_PORT or BARE_PORT"
	fi
done
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
CLK_TCK=$(getconf CLK_TCK)

# --- Processes ---------------------------------------------------------------------

TMP=$(mktemp -d -t bench-proxy.XXXXXX)
PIDS=()
cleanup() {
	local status=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ -n "$KEEP_LOGS" ] || ((status != 0)); then
		log "logs are in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: run CMD on SERVER_CPU in the background, logging to
# $TMP/NAME.log; its pid goes to STARTED.
start() {
	local name=$1
	shift
	taskset -c "$SERVER_CPU" "$@" >"$TMP/$name.log" 2>&1 &
	STARTED=$!
	PIDS+=("$STARTED")
}

# stop PID: stop a process that start started, wait for it, and forget it, so
# that cleanup never signals a pid the system has since given to another process.
stop() {
	local pid rest=()
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	for pid in "${PIDS[@]}"; do
		if [[ $pid != "$1" ]]; then rest+=("$pid"); fi
	done
	PIDS=("${rest[@]}")
}

# wait_http URL NAME PID: wait up to 10s for URL to answer 2xx; else show the
# end of NAME's log and fail.
wait_http() {
	local _
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		kill -0 "$3" 2>/dev/null || break
		sleep 0.1
	done
	log "$2 did not answer on $1; the end of its log:"
	tail -n 10 "$TMP/$2.log" >&2 || true
	return 1
}

# predicts BASE_URL: whether one benchmark request through BASE_URL is answered
# 200 with predictions; a path that is not would only measure errors.
predicts() {
	curl -fsS -o "$TMP/check.json" -H 'Content-Type: application/json' --data-binary "@$BODY" "$1$REQUEST_PATH" 2>/dev/null &&
		grep -q '"predictions":\[' "$TMP/check.json"
}

# --- Measurements ------------------------------------------------------------------

# cpu_ticks PID...: user+system CPU of the processes in clock ticks: fields 14
# and 15 of /proc/PID/stat, counted after the ")" that ends the command name.
cpu_ticks() {
	local total=0 pid stat f
	for pid in "$@"; do
		stat=$(<"/proc/$pid/stat")
		read -r -a f <<<"${stat##*) }"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}

# core_times CPU: "busy total" jiffies of one CPU, from /proc/stat.
core_times() {
	awk -v cpu="cpu$1" '$1 == cpu {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat
}

# busy BEFORE AFTER: percentage of busy time between two core_times.
busy() {
	awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2])}'
}

# others BEFORE AFTER OURS_SECONDS: percentage of one CPU's time between two
# core_times that our processes did not use: other processes, which skew the
# numbers, plus interrupt time not charged to ours (small in practice).
others() {
	awk -v a="$1" -v b="$2" -v ours="$3" -v hz="$CLK_TCK" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		v = 100 * (y[1] - x[1] - ours * hz) / (y[2] - x[2]); printf "%.0f", v < 0 ? 0 : v
	}'
}

# per_request TICKS REQUESTS: microseconds of CPU per request.
per_request() {
	awk -v t="$1" -v hz="$CLK_TCK" -v r="$2" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}'
}

# metric NAME: the sum of all series of a sidecar metric, or "absent".
metric() {
	curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null |
		awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $NF; n++} END {if (n) printf "%.0f\n", s; else print "absent"}'
}

# delta BEFORE AFTER: AFTER-BEFORE, or "absent".
delta() {
	if [[ $1 == absent || $2 == absent ]]; then echo absent; else echo $(($2 - $1)); fi
}

# drain: wait up to 5s for the sidecar's capture queue to empty, so that the
# parsing a run causes is counted in that run's CPU and not the next one's.
drain() {
	local _
	for _ in $(seq 1 50); do
		case $(metric modelmon_capture_queue_length) in 0 | absent) return 0 ;; esac
		sleep 0.1
	done
	log "the capture queue is still not empty after 5s"
}

# Results of each round, keyed by "delay/conns/path/round"; SYSCALLS and
# SWITCHES, counted once per point, by "delay/conns/path". pick_median_rounds
# copies each point's median round to "delay/conns/path".
declare -A REQS RPS P50 P99 ERRS PROXY_US STUB_US CPU_WRK CPU_SERVERS DROPPED PARSED SYSCALLS SWITCHES ROUND_RPS
MEASURED=()
DISTURBED=()

# bench_fields LOG: the key=value fields of wrk's result line in LOG.
bench_fields() {
	local line
	line=$(grep '^BENCH ' "$1") || die "no result line from wrk: $(tail -n 5 "$1")"
	echo "${line#BENCH }"
}

# count_syscalls KEY LOG PID... -- WRK...: run wrk for SYSCALL_DURATION while
# perf counts the system calls and context switches of the proxy PIDs, and keep
# them per request. A run of its own, after the measured one: the tracepoint
# adds a little to every system call.
count_syscalls() {
	local key=$1 log=$2 pids=()
	shift 2
	while [[ $1 != -- ]]; do
		pids+=("$1")
		shift
	done
	shift
	local list
	list=$(IFS=,; echo "${pids[*]}")
	"$PERF" stat -x, -e raw_syscalls:sys_enter,context-switches -p "$list" -o "$log.perf" -- sleep "$SYSCALL_DURATION" 2>/dev/null &
	local perf_pid=$!
	"$@" -d "$SYSCALL_DURATION" >"$log-syscalls.log" 2>&1 || die "wrk failed: $(tail -n 5 "$log-syscalls.log")"
	wait "$perf_pid" || die "perf stat failed: $(cat "$log.perf")"
	local fields kv requests=0
	fields=$(bench_fields "$log-syscalls.log") || exit 1
	for kv in $fields; do
		if [[ ${kv%%=*} == requests ]]; then requests=${kv#*=}; fi
	done
	((requests > 0)) || die "wrk made no request while counting system calls"
	SYSCALLS[$key]=$(awk -F, -v n="$requests" '$3 ~ /^raw_syscalls:sys_enter/ {printf "%.2f", $1 / n}' "$log.perf")
	SWITCHES[$key]=$(awk -F, -v n="$requests" '$3 ~ /^context-switches/ {printf "%.2f", $1 / n}' "$log.perf")
}

# run_point DELAY CONNS PATH PORT ROUND [PROXY_PID...]: warm up, then measure one
# round of one point. The last round also counts the proxy's system calls.
run_point() {
	local delay=$1 conns=$2 path=$3 port=$4 round=$5
	shift 5
	local proxy=("$@") key="$delay/$conns/$path/$round" url="http://127.0.0.1:$port$REQUEST_PATH"
	local wrk=(taskset -c "$WRK_CPU" wrk "-t$((THREADS < conns ? THREADS : conns))" "-c$conns" --latency -s "$LUA")
	local log="$TMP/wrk-${delay}-${conns}-${path}-${round}"
	log "delay $delay, $conns connections, $path, round $round of $ROUNDS: warm-up $WARMUP, then $DURATION"

	"${wrk[@]}" -d "$WARMUP" "$url" >"$log-warmup.log" 2>&1 || die "wrk failed: $(tail -n 5 "$log-warmup.log")"
	if [[ $path == sidecar ]]; then drain; fi

	local stub0 proxy0=0 wrk0 servers0 dropped0 parsed0
	stub0=$(cpu_ticks "$STUB_PID")
	if ((${#proxy[@]})); then proxy0=$(cpu_ticks "${proxy[@]}"); fi
	if [[ $path == sidecar ]]; then
		dropped0=$(metric modelmon_capture_dropped_total)
		parsed0=$(metric modelmon_payloads_parsed_total)
	fi
	wrk0=$(core_times "$WRK_CPU")
	servers0=$(core_times "$SERVER_CPU")

	local TIMEFORMAT='%U %S' # of wrk, for the share of its core it did not use
	{ time "${wrk[@]}" -d "$DURATION" "$url" >"$log.log" 2>&1; } 2>"$log.time" ||
		die "wrk failed: $(tail -n 5 "$log.log")"

	local wrk1 servers1 stub1 proxy1=0 ours
	wrk1=$(core_times "$WRK_CPU")
	servers1=$(core_times "$SERVER_CPU")
	ours=$(($(cpu_ticks "$STUB_PID" "${proxy[@]}") - stub0 - proxy0))
	if [[ $path == sidecar ]]; then drain; fi
	stub1=$(cpu_ticks "$STUB_PID")
	if ((${#proxy[@]})); then proxy1=$(cpu_ticks "${proxy[@]}"); fi

	local fields kv requests=0 duration_us=0 p50_us=0 p99_us=0 status_errors=0 socket_errors=0
	fields=$(bench_fields "$log.log") || exit 1
	for kv in $fields; do
		case ${kv%%=*} in
		requests) requests=${kv#*=} ;;
		duration_us) duration_us=${kv#*=} ;;
		p50_us) p50_us=${kv#*=} ;;
		p99_us) p99_us=${kv#*=} ;;
		status_errors) status_errors=${kv#*=} ;;
		socket_errors) socket_errors=${kv#*=} ;;
		esac
	done
	((requests > 0)) || die "wrk made no request on $path: $(cat "$log.log")"

	REQS[$key]=$requests
	RPS[$key]=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN {printf "%.0f", r / (d / 1e6)}')
	P50[$key]=$p50_us
	P99[$key]=$p99_us
	ERRS[$key]=$((status_errors + socket_errors))
	STUB_US[$key]=$(per_request $((stub1 - stub0)) "$requests")
	if ((${#proxy[@]})); then PROXY_US[$key]=$(per_request $((proxy1 - proxy0)) "$requests"); fi
	local others_wrk others_servers
	others_wrk=$(others "$wrk0" "$wrk1" "$(awk '{print $1 + $2}' "$log.time")")
	others_servers=$(others "$servers0" "$servers1" "$(awk -v t="$ours" -v hz="$CLK_TCK" 'BEGIN {print t / hz}')")
	CPU_WRK[$key]="$(busy "$wrk0" "$wrk1")% ($others_wrk%)"
	CPU_SERVERS[$key]="$(busy "$servers0" "$servers1")% ($others_servers%)"
	if ((others_wrk > 10 || others_servers > 10)); then
		DISTURBED+=("$delay $conns $path (round $round)")
		log "other processes took $others_wrk% of the wrk core and $others_servers% of the servers' core: this point is disturbed"
	fi
	if [[ $path == sidecar ]]; then
		DROPPED[$key]=$(delta "$dropped0" "$(metric modelmon_capture_dropped_total)")
		PARSED[$key]=$(delta "$parsed0" "$(metric modelmon_payloads_parsed_total)")
		kill -0 "${proxy[0]}" 2>/dev/null || die "the sidecar died; see $TMP/exporter.log"
	fi
	if [ -n "$PERF" ] && ((${#proxy[@]})) && ((round == ROUNDS)); then
		count_syscalls "$delay/$conns/$path" "$log" "${proxy[@]}" -- "${wrk[@]}" "$url"
		if [[ $path == sidecar ]]; then drain; fi
	fi
	if [[ " ${MEASURED[*]} " != *" $path "* ]]; then MEASURED+=("$path"); fi
}

# pick_median_rounds: for every point measured, copy its median round by
# requests/s (the lower middle one of an even number) to the point's own key,
# with the requests/s of all its rounds in ROUND_RPS; errors, captures dropped
# and payloads parsed add up over the rounds.
pick_median_rounds() {
	local key r rounds median joined errs dropped parsed reqs
	for key in "${!RPS[@]}"; do
		[[ $key == */*/*/1 ]] || continue
		key=${key%/1}
		rounds=() joined='' errs=0 dropped=0 parsed=0 reqs=0
		for ((r = 1; r <= ROUNDS; r++)); do
			rounds+=("${RPS[$key/$r]} $r")
			joined+="${RPS[$key/$r]}, "
			errs=$((errs + ERRS[$key/$r]))
			reqs=$((reqs + REQS[$key/$r]))
			if [[ ${DROPPED[$key/$r]:-absent} == absent || $dropped == absent ]]; then dropped=absent; else dropped=$((dropped + DROPPED[$key/$r])); fi
			if [[ ${PARSED[$key/$r]:-absent} == absent || $parsed == absent ]]; then parsed=absent; else parsed=$((parsed + PARSED[$key/$r])); fi
		done
		median=$(printf '%s\n' "${rounds[@]}" | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) {print $2}')
		ROUND_RPS[$key]=${joined%, }
		RPS[$key]=${RPS[$key/$median]}
		P50[$key]=${P50[$key/$median]}
		P99[$key]=${P99[$key/$median]}
		STUB_US[$key]=${STUB_US[$key/$median]}
		CPU_WRK[$key]=${CPU_WRK[$key/$median]}
		CPU_SERVERS[$key]=${CPU_SERVERS[$key/$median]}
		if [ -n "${PROXY_US[$key/$median]:-}" ]; then PROXY_US[$key]=${PROXY_US[$key/$median]}; fi
		ERRS[$key]=$errs
		REQS[$key]=$reqs
		DROPPED[$key]=$dropped
		PARSED[$key]=$parsed
	done
}

# --- Build -------------------------------------------------------------------------

# Anything else running on these cores skews every number: sample them first.
wrk0=$(core_times "$WRK_CPU")
servers0=$(core_times "$SERVER_CPU")
sleep 1
BUSY_BEFORE="CPU$WRK_CPU $(busy "$wrk0" "$(core_times "$WRK_CPU")")%, CPU$SERVER_CPU $(busy "$servers0" "$(core_times "$SERVER_CPU")")%"
if awk -v s="$BUSY_BEFORE" 'BEGIN {n = split(s, w, /[ ,%]+/); for (i = 2; i <= n; i += 2) if (w[i] + 0 > 10) exit 0; exit 1}'; then
	log "WARNING: the cores are already busy ($BUSY_BEFORE) before the run; other processes will skew the numbers"
fi

mkdir -p bin
log "building bin/model-server and bin/exporter"
go build -o bin/model-server ./examples/model-server
go build -o bin/bareproxy ./scripts/bench/bareproxy
SIDECAR_NOTE=
# The exporter is built as `make build` builds it, so that the report's
# build line names its version and revision.
EXPORTER_LDFLAGS="-X github.com/prometheus/common/version.Version=$(cat VERSION 2>/dev/null || echo 0.1.0)
	-X github.com/prometheus/common/version.Revision=$(git rev-parse HEAD 2>/dev/null)
	-X github.com/prometheus/common/version.Branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null)"
if [[ " $PATHS " == *" sidecar "* ]] && ! go build -ldflags "$EXPORTER_LDFLAGS" -o bin/exporter ./cmd/exporter 2>"$TMP/build-exporter.log"; then
	SIDECAR_NOTE="skipped: go build ./cmd/exporter failed"
	log "SKIPPING the sidecar path: go build ./cmd/exporter failed:"
	head -n 10 "$TMP/build-exporter.log" >&2
fi
EXPORTER_ARGS=(--proxy.upstream="http://127.0.0.1:$STUB_PORT" --proxy.listen-address="127.0.0.1:$SIDECAR_PORT"
	--web.listen-address="127.0.0.1:$METRICS_PORT" --log.level=warn)
if [ -n "$EXPORTER_CONFIG" ]; then EXPORTER_ARGS+=(--config.file="$EXPORTER_CONFIG"); fi
# shellcheck disable=SC2206 # EXPORTER_FLAGS is split into flags on purpose.
EXPORTER_ARGS+=($EXPORTER_FLAGS)
NGINX_USER='# not root: the worker runs as the invoking user'
if ((EUID == 0)); then NGINX_USER='user root;'; fi

# --- Run ---------------------------------------------------------------------------

for delay in $DELAYS; do
	start model-server bin/model-server --listen-address="127.0.0.1:$STUB_PORT" --delay="$delay" --log.level=warn
	STUB_PID=$STARTED
	wait_http "http://127.0.0.1:$STUB_PORT/v2/health/ready" model-server "$STUB_PID" || exit 1
	predicts "http://127.0.0.1:$STUB_PORT" || die "the stub model server does not answer predictions"

	# The proxies all stay up for this delay, in front of this one stub.
	SIDECAR_PID=
	NGINX_PIDS=()
	BARE_PID=
	active=()
	for path in $PATHS; do
		case $path in
		direct) active+=(direct) ;;
		sidecar)
			if [ -n "$SIDECAR_NOTE" ]; then continue; fi
			start exporter bin/exporter "${EXPORTER_ARGS[@]}"
			SIDECAR_PID=$STARTED
			if ! wait_http "http://127.0.0.1:$METRICS_PORT/metrics" exporter "$SIDECAR_PID"; then
				log "SKIPPING the sidecar path: bin/exporter did not start"
				SIDECAR_NOTE="skipped: bin/exporter did not start"
			elif ! predicts "http://127.0.0.1:$SIDECAR_PORT"; then
				log "SKIPPING the sidecar path: it does not proxy predictions: $(head -c 300 "$TMP/check.json" 2>/dev/null)"
				SIDECAR_NOTE="skipped: the sidecar did not proxy a prediction"
			fi
			if [ -n "$SIDECAR_NOTE" ]; then
				stop "$SIDECAR_PID"
				SIDECAR_PID=
				continue
			fi
			active+=(sidecar)
			;;
		nginx)
			mkdir -p "$TMP/nginx"
			sed -e "s|@DIR@|$TMP/nginx|g" -e "s|@LISTEN@|127.0.0.1:$NGINX_PORT|g" \
				-e "s|@UPSTREAM@|127.0.0.1:$STUB_PORT|g" -e "s|@USER@|$NGINX_USER|g" \
				scripts/bench/nginx.conf.tmpl >"$TMP/nginx/nginx.conf"
			start nginx "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;'
			wait_http "http://127.0.0.1:$NGINX_PORT/v2/health/ready" nginx "$STARTED" || exit 1
			predicts "http://127.0.0.1:$NGINX_PORT" || die "nginx does not proxy predictions; see $TMP/nginx/error.log"
			# The master and its worker; the master only idles but is counted too.
			mapfile -t NGINX_PIDS < <(echo "$STARTED" && pgrep -P "$STARTED")
			((${#NGINX_PIDS[@]} >= 2)) || die "no nginx worker process"
			active+=(nginx)
			;;
		fasthttp)
			# shellcheck disable=SC2086 # BARE_FLAGS is split into flags on purpose.
			start bareproxy bin/bareproxy --listen-address="127.0.0.1:$BARE_PORT" --upstream="127.0.0.1:$STUB_PORT" $BARE_FLAGS
			BARE_PID=$STARTED
			wait_http "http://127.0.0.1:$BARE_PORT/v2/health/ready" bareproxy "$BARE_PID" || exit 1
			active+=(fasthttp)
			;;
		*) die "unknown path $path in PATHS (want direct, sidecar, nginx or fasthttp)" ;;
		esac
	done

	for conns in $CONNECTIONS; do
		for ((round = 1; round <= ROUNDS; round++)); do
			for path in "${active[@]}"; do
				case $path in
				direct) run_point "$delay" "$conns" direct "$STUB_PORT" "$round" ;;
				sidecar) run_point "$delay" "$conns" sidecar "$SIDECAR_PORT" "$round" "$SIDECAR_PID" ;;
				nginx) run_point "$delay" "$conns" nginx "$NGINX_PORT" "$round" "${NGINX_PIDS[@]}" ;;
				fasthttp) run_point "$delay" "$conns" fasthttp "$BARE_PORT" "$round" "$BARE_PID" ;;
				esac
			done
		done
	done

	if [ -n "$SIDECAR_PID" ]; then stop "$SIDECAR_PID"; fi
	if ((${#NGINX_PIDS[@]})); then stop "${NGINX_PIDS[0]}"; fi
	if [ -n "$BARE_PID" ]; then stop "$BARE_PID"; fi
	stop "$STUB_PID"
done

# --- Report ------------------------------------------------------------------------

# us MICROSECONDS, plus_us MICROSECONDS: a latency, or a signed difference.
us() { awk -v v="$1" 'BEGIN {if (v < 1000) printf "%d µs", v; else printf "%.2f ms", v / 1000}'; }
plus_us() {
	awk -v v="$1" 'BEGIN {s = v < 0 ? "−" : "+"; v = v < 0 ? -v : v; if (v < 1000) printf "%s%d µs", s, v; else printf "%s%.2f ms", s, v / 1000}'
}

# targets prints the sidecar against nginx at each point, beside the targets
# the sidecar is held to: at 0 ms / 16 connections more requests/s than nginx,
# at every other point at least 0.95 of nginx's, and at most 1.2 × nginx's CPU
# per request everywhere, with the ratio of each round (the paths took turns
# within it) and how many rounds met the target. The bare fasthttp proxy
# against nginx is the floor.
targets() {
	local delay conns s n f rps_target rows=
	for delay in $DELAYS; do
		for conns in $CONNECTIONS; do
			s="$delay/$conns/sidecar" n="$delay/$conns/nginx" f="$delay/$conns/fasthttp"
			[[ -n ${RPS[$s]:-} && -n ${RPS[$n]:-} && -n ${PROXY_US[$s]:-} && -n ${PROXY_US[$n]:-} ]] || continue
			rps_target='≥ 0.95'
			if [[ $delay == 0ms && $conns == 16 ]]; then rps_target='> 1'; fi
			rows+=$(awk -v d="$delay" -v c="$conns" -v t="$rps_target" -v sr="${RPS[$s]}" -v nr="${RPS[$n]}" \
				-v sc="${PROXY_US[$s]}" -v nc="${PROXY_US[$n]}" -v fr="${RPS[$f]:-}" -v fc="${PROXY_US[$f]:-}" \
				-v srounds="${ROUND_RPS[$s]:-}" -v nrounds="${ROUND_RPS[$n]:-}" 'BEGIN {
				r = sr / nr; cpu = sc / nc
				met = (t == "> 1") ? (r > 1) : (r >= 0.95)
				floor = (fr != "" && fc != "") ? sprintf("%.2f; %.2f", fr / nr, fc / nc) : "—"
				# Round by round: the paths took turns within each round, so
				# these pairs saw the same machine.
				k = split(srounds, a, ", "); split(nrounds, b, ", "); byround = ""; won = 0
				for (i = 1; i <= k; i++) {
					q = a[i] / b[i]; byround = byround (i > 1 ? ", " : "") sprintf("%.2f", q)
					won += (t == "> 1") ? (q > 1) : (q >= 0.95)
				}
				printf "| %s / %s | %.2f | %s (%d of %d) | %s | %s | %.2f | ≤ 1.2 | %s | %s |\n", d, c, r, byround, won, k, t, met ? "yes" : "**no**", cpu, cpu <= 1.2 ? "yes" : "**no**", floor
			}')$'\n'
		done
	done
	[ -n "$rows" ] || return 0
	cat <<TABLE

### The sidecar against nginx, and the targets

| delay / conns | req/s ÷ nginx's | by round (rounds meeting the target) | target | met | CPU/req ÷ nginx's | target | met | bare fasthttp ÷ nginx: req/s; CPU/req |
|---|---:|---|---|---|---:|---|---|---|
TABLE
	printf '%s' "$rows"
}

report() {
	local exporter_version='not built'
	if [ -x bin/exporter ] && [ -z "$SIDECAR_NOTE" ]; then exporter_version=$(bin/exporter --version 2>&1 | head -n 1); fi
	local commit
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit+=' (with uncommitted changes)'; fi
	cat <<EOF
# Proxy benchmark: direct, modelmon sidecar, nginx, bare fasthttp

\`\`\`
$COMMAND
\`\`\`

- Date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes')
- Machine: $CPUS CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), Linux $(uname -r)
- Before the run: load average $LOAD; cores busy over 1 s: $BUSY_BEFORE (anything above a few % skews the results)
- $(go version | sed 's/^go version //'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'), exporter: $exporter_version, commit $commit
- Stub: \`taskset -c $SERVER_CPU bin/model-server --listen-address=127.0.0.1:$STUB_PORT --delay=<delay> --log.level=warn\`
- Sidecar: \`taskset -c $SERVER_CPU bin/exporter ${EXPORTER_ARGS[*]}\`${SIDECAR_NOTE:+ ($SIDECAR_NOTE)}
- nginx: \`taskset -c $SERVER_CPU nginx -c <tmp>/nginx.conf -g 'daemon off;'\` from scripts/bench/nginx.conf.tmpl: 1 worker, upstream keepalive, HTTP/1.1, access log off
- Load: \`taskset -c $WRK_CPU wrk -t$THREADS -c<conns> -d$DURATION --latency -s $LUA http://127.0.0.1:<port>$REQUEST_PATH\`
  (-t at most -c), after a $WARMUP warm-up; body: $BODY, one KServe v1 instance with 20 numeric features
- $ROUNDS rounds of each point, the paths taking turns within each round; each path is shown by its median
  round by requests/s (the lower middle one of an even number), with every round's requests/s beside it
- Paths measured: ${MEASURED[*]:-none}

| delay | conns | path | req/s | req/s by round | vs direct | p50 | p99 | +p50 | +p99 | proxy CPU/req | stub CPU/req | proxy syscalls/req | proxy ctx switches/req | wrk core busy (others) | server core busy (others) | errors | captures dropped | payloads parsed |
|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
	local delay conns path key direct ratio ap50 ap99 proxy dropped parsed
	for delay in $DELAYS; do
		for conns in $CONNECTIONS; do
			for path in direct sidecar nginx fasthttp; do
				key="$delay/$conns/$path"
				direct="$delay/$conns/direct"
				[ -n "${RPS[$key]:-}" ] || continue
				ratio='—' ap50='—' ap99='—' proxy='—' dropped='—' parsed='—'
				if [[ $path != direct && -n ${RPS[$direct]:-} ]]; then
					ratio=$(awk -v a="${RPS[$key]}" -v b="${RPS[$direct]}" 'BEGIN {printf "%.2f", a / b}')
					ap50=$(plus_us $((${P50[$key]} - ${P50[$direct]})))
					ap99=$(plus_us $((${P99[$key]} - ${P99[$direct]})))
				fi
				if [ -n "${PROXY_US[$key]:-}" ]; then proxy="${PROXY_US[$key]} µs"; fi
				if [[ $path == sidecar ]]; then
					dropped=${DROPPED[$key]}
					parsed="${PARSED[$key]} of ${REQS[$key]}"
				fi
				printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s µs | %s | %s | %s | %s | %s | %s | %s |\n' \
					"$delay" "$conns" "$path" "${RPS[$key]}" "${ROUND_RPS[$key]}" "$ratio" "$(us "${P50[$key]}")" "$(us "${P99[$key]}")" \
					"$ap50" "$ap99" "$proxy" "${STUB_US[$key]}" "${SYSCALLS[$key]:-—}" "${SWITCHES[$key]:-—}" \
					"${CPU_WRK[$key]}" "${CPU_SERVERS[$key]}" \
					"${ERRS[$key]}" "$dropped" "$parsed"
			done
		done
	done
	if ((${#DISTURBED[@]})); then
		local list
		list=$(printf '%s, ' "${DISTURBED[@]}")
		printf '\n**Disturbed** (other processes took more than 10%% of a core): %s. Run again on a quiet machine.\n' "${list%, }"
	fi
	cat <<EOF

- **req/s** and every column after **req/s by round** are those of the path's median round, except the last
  three, which add up over all rounds. **vs direct**: requests/s over direct's (both medians) at the same delay
  and connections; **+p50, +p99**: latency added to direct's.
- **proxy CPU/req**: user+system CPU of the proxy over the measured run (the exporter process; nginx's master
  and worker), from /proc/PID/stat, per request. The sidecar's run ends once its capture queue is empty, so the
  parsing is counted. **stub CPU/req**: the same for the stub model server. /proc counts in ${CLK_TCK}ths of a second.
- **proxy syscalls/req, ctx switches/req**: system calls entered and context switches of the proxy processes, per
  request, counted by \`perf stat -e raw_syscalls:sys_enter,context-switches\` over a further $SYSCALL_DURATION run of
  the same load after the last round's measured one${SYSCALL_NOTE:+ ($SYSCALL_NOTE)}.
- **core busy**: user+system+irq+softirq share of the wrk core (CPU$WRK_CPU) and the servers' core (CPU$SERVER_CPU)
  during the run (/proc/stat). Near 100% on the wrk core means wrk, not the servers, set the pace; near 100% on
  the servers' core means the servers did. **(others)**: the part of it not used by wrk, or by the stub and
  proxy: other processes on the machine. A row where it is more than a few % was disturbed; run it again.
- **errors**: answers with status ≥ 400 plus socket errors seen by wrk. **captures dropped**: increase of
  modelmon_capture_dropped_total (all reasons) during the rounds. **payloads parsed**: increase of
  modelmon_payloads_parsed_total, against the requests sent in the rounds.
EOF
	targets
}

pick_median_rounds
report | tee "$OUT"
log "report written to $OUT"
