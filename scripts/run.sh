#!/usr/bin/env bash
# Run the integrations hub locally: bash scripts/run.sh
#
# Embedded defaults, no external servers: SQLite and Celery's filesystem
# broker under VAR_DIR (settings: integrations_site.settings.local).
# Migrates, seeds the demo data (manage.py seed_demo), then starts the demo
# upstream (manage.py run_demo_upstream: the stand-in external APIs and OAuth
# provider of the demo integrations, and a sender of signed webhook
# deliveries), the web server, a Celery worker, Celery beat and the stream
# consumer (manage.py run_streams: it holds the event streams of integrations
# with update method "sse", the demo shipping's among them); Ctrl-C stops all
# five.  The upstream, worker, beat and streams log to VAR_DIR/log/; the web
# server logs to stdout.
#
# Environment:
#   HOST, PORT        where the web server listens (default 127.0.0.1:8000)
#   UPSTREAM_PORT     where the demo upstream listens, on 127.0.0.1 (default 8001)
#   DEMO_SEND_EVERY   seconds between the upstream's webhook deliveries (default 5; 0: none)
#   VAR_DIR           where the run keeps its state: SQLite file, broker folders,
#                     file cache, logs (default <repo>/var); one folder per run
#   DEMO_PASSWORD     password of the seeded users (default demo-pass-123)
#   OAUTH_CALLBACK_URL  the OAuth redirect URI (default http://HOST:PORT/api/v1/oauth/callback)
#   HEALTH_TIMEOUT    seconds to wait for the upstream and the web server (default 30)
#   STOP_TIMEOUT      seconds each child gets to stop before it is killed (default 20)
#   PYTHON            interpreter that creates .venv when it is missing (default python3)
#   RUN_ONCE_CHECK=1  start everything, wait until /healthz answers, print the
#                     URL, stop everything and exit 0 (a smoke test)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

PYTHON="${PYTHON:-python3}"
VENV="${ROOT}/.venv"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
UPSTREAM_PORT="${UPSTREAM_PORT:-8001}"
DEMO_SEND_EVERY="${DEMO_SEND_EVERY:-5}"
VAR_DIR="${VAR_DIR:-${ROOT}/var}"
LOG_DIR="${VAR_DIR}/log"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-30}"
STOP_TIMEOUT="${STOP_TIMEOUT:-20}"

say() { printf '[run] %s\n' "$*" >&2; }

ensure_venv() {
    if [[ -x "${VENV}/bin/python" ]] && "${VENV}/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    say "creating ${VENV} with ${PYTHON}"
    rm -rf "${VENV}"
    "${PYTHON}" -m venv "${VENV}"
}

ensure_deps() {
    [[ -f requirements.txt ]] || { say "missing requirements.txt"; exit 1; }
    local sum stamp
    sum="$(sha256sum requirements.txt | cut -d' ' -f1)"
    stamp="${VENV}/.deps-run-${sum}"
    [[ -f "${stamp}" ]] && return 0
    say "installing requirements.txt into .venv"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    rm -f "${VENV}"/.deps-run-*
    touch "${stamp}"
}

ensure_venv
ensure_deps

# Where runserver binds, and the address to poll and show (a wildcard bind
# is reached on loopback).
BARE_HOST="${HOST#[}"
BARE_HOST="${BARE_HOST%]}"
case "${BARE_HOST}" in
    0.0.0.0 | "") LISTEN_HOST="0.0.0.0" URL_HOST="127.0.0.1" ;;
    ::) LISTEN_HOST="[::]" URL_HOST="[::1]" ;;
    *:*) LISTEN_HOST="[${BARE_HOST}]" URL_HOST="[${BARE_HOST}]" ;;
    *) LISTEN_HOST="${BARE_HOST}" URL_HOST="${BARE_HOST}" ;;
esac
BASE_URL="http://${URL_HOST}:${PORT}"
UPSTREAM_URL="http://127.0.0.1:${UPSTREAM_PORT}"

export DJANGO_SETTINGS_MODULE=integrations_site.settings.local
export PYTHONUNBUFFERED=1
export VAR_DIR
# seed_demo points the demo integrations at the upstream and allows OAuth return URLs on the hub.
export DEMO_UPSTREAM_URL="${UPSTREAM_URL}"
export DEMO_HUB_URL="${BASE_URL}"
export OAUTH_CALLBACK_URL="${OAUTH_CALLBACK_URL:-${BASE_URL}/api/v1/oauth/callback}"
mkdir -p "${LOG_DIR}"

"${VENV}/bin/python" manage.py migrate --noinput
"${VENV}/bin/python" manage.py seed_demo

PIDS=()
NAMES=()
STOPPING=0

# Start a child, its output appended to a log file ("-": inherit stdout).
# Background children of a script ignore SIGINT, so stop_all stops them
# explicitly with SIGTERM.
start_child() {
    local name="$1" log="$2"
    shift 2
    if [[ "${log}" == "-" ]]; then
        "$@" &
    else
        "$@" >>"${log}" 2>&1 &
    fi
    PIDS+=("$!")
    NAMES+=("${name}")
    if [[ "${log}" == "-" ]]; then
        say "started ${name} (pid $!)"
    else
        say "started ${name} (pid $!), log ${log#"${ROOT}"/}"
    fi
}

alive() { kill -0 "$1" 2>/dev/null; }

stop_all() {
    [[ ${STOPPING} -eq 1 ]] && return 0
    STOPPING=1
    local i pid
    for i in "${!PIDS[@]}"; do
        pid="${PIDS[$i]}"
        if alive "${pid}"; then
            say "stopping ${NAMES[$i]} (pid ${pid})"
            kill -TERM "${pid}" 2>/dev/null || true
        fi
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) any
    while ((SECONDS < deadline)); do
        any=0
        for pid in "${PIDS[@]}"; do
            alive "${pid}" && any=1
        done
        ((any == 0)) && break
        sleep 0.2
    done
    for i in "${!PIDS[@]}"; do
        pid="${PIDS[$i]}"
        if alive "${pid}"; then
            say "${NAMES[$i]} (pid ${pid}) did not stop in ${STOP_TIMEOUT}s: killing it"
            kill -KILL "${pid}" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        wait "${pid}" 2>/dev/null || true
    done
}

# shellcheck disable=SC2317  # invoked by trap
on_signal() {
    say "interrupted: shutting down"
    stop_all
    exit 130
}

trap on_signal INT TERM
trap stop_all EXIT

healthy() {
    "${VENV}/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
}

# Wait until $1 answers 200; give up (and stop everything) if a child exits or time runs out.
wait_healthy() {
    local url="$1" deadline=$((SECONDS + HEALTH_TIMEOUT)) i
    until healthy "${url}"; do
        for i in "${!PIDS[@]}"; do
            if ! alive "${PIDS[$i]}"; then
                if [[ "${NAMES[$i]}" == web ]]; then
                    say "web exited during start-up (its output is above)"
                else
                    say "${NAMES[$i]} exited during start-up (see ${LOG_DIR}/${NAMES[$i]}.log)"
                fi
                exit 1
            fi
        done
        if ((SECONDS >= deadline)); then
            say "${url} did not answer 200 within ${HEALTH_TIMEOUT}s"
            exit 1
        fi
        sleep 0.5
    done
}

# The upstream first: the connection tests seed_demo queued run as soon as the worker is up.
start_child upstream "${LOG_DIR}/upstream.log" "${VENV}/bin/python" manage.py run_demo_upstream \
    --host 127.0.0.1 --port "${UPSTREAM_PORT}" --hub-url "${BASE_URL}" --send-every "${DEMO_SEND_EVERY}"
wait_healthy "${UPSTREAM_URL}/health"
start_child web - "${VENV}/bin/python" manage.py runserver --noreload "${LISTEN_HOST}:${PORT}"
start_child worker "${LOG_DIR}/worker.log" "${VENV}/bin/celery" -A integrations_site worker \
    --loglevel=info --pool=threads --concurrency=8
start_child beat "${LOG_DIR}/beat.log" "${VENV}/bin/celery" -A integrations_site beat \
    --loglevel=info --scheduler django_celery_beat.schedulers:DatabaseScheduler
# It stops on SIGTERM as the others do, giving back its streams' leases first.
start_child streams "${LOG_DIR}/streams.log" "${VENV}/bin/python" manage.py run_streams
wait_healthy "${BASE_URL}/healthz"

printf '\nIntegrations hub running at %s/  (admin: /admin/, API docs: /api/docs/)\n' "${BASE_URL}"
printf 'Demo upstream at %s/ (the demo integrations call it; it sends webhooks every %ss).\n' \
    "${UPSTREAM_URL}" "${DEMO_SEND_EVERY}"
printf 'Processes: upstream, web, worker, beat, streams (the event stream consumer).\n'
printf 'Logs: %s/upstream.log, worker.log, beat.log, streams.log.  Ctrl-C stops everything.\n\n' "${LOG_DIR}"

if [[ "${RUN_ONCE_CHECK:-0}" == "1" ]]; then
    say "RUN_ONCE_CHECK=1: start-up verified, stopping"
    stop_all
    exit 0
fi

# Stay up until a signal arrives or one of the five exits on its own.
set +e
wait -n "${PIDS[@]}"
rc=$?
set -e
for i in "${!PIDS[@]}"; do
    if ! alive "${PIDS[$i]}"; then
        say "${NAMES[$i]} exited (status ${rc}): stopping the others"
        break
    fi
done
stop_all
exit $((rc == 0 ? 1 : rc))
