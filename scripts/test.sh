#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args...]
#
# Creates .venv when missing, installs requirements.txt + requirements-dev.txt
# when they changed, starts (or reuses) private PostgreSQL and Redis on
# loopback through scripts/services.sh, then runs pytest with the given
# arguments twice:
#   postgres  PostgreSQL + Redis (cache and broker), as in production
#   sqlite    the embedded default of scripts/run.sh: SQLite, no Redis (a file
#             cache), Celery's filesystem broker, all under a fresh VAR_DIR
# A pass that collects no test fails; the run fails when either pass fails.
#
# IH_TEST_PASSES="sqlite" (or "postgres") runs one pass only.
# IH_SKIP_SERVICES=1 skips scripts/services.sh and uses DATABASE_URL and
# REDIS_URL from the environment as they are (postgres pass).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

PYTHON="${PYTHON:-python3}"
VENV="${ROOT}/.venv"

say() { printf '[test] %s\n' "$*" >&2; }

ensure_venv() {
    if [[ -x "${VENV}/bin/python" ]] && "${VENV}/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    say "creating ${VENV} with ${PYTHON}"
    rm -rf "${VENV}"
    "${PYTHON}" -m venv "${VENV}"
}

# Installs the given requirement files unless a stamp for exactly their
# current contents exists.
ensure_deps() {
    local f
    for f in "$@"; do
        [[ -f "${f}" ]] || { say "missing ${f}"; exit 1; }
    done
    local sum stamp
    sum="$(cat "$@" | sha256sum | cut -d' ' -f1)"
    stamp="${VENV}/.deps-${sum}"
    [[ -f "${stamp}" ]] && return 0
    say "installing $* into .venv"
    local args=() f2
    for f2 in "$@"; do args+=(-r "${f2}"); done
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
    rm -f "${VENV}"/.deps-[0-9a-f]*
    touch "${stamp}"
}

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
ensure_chromium() {
    command -v chromium >/dev/null 2>&1 && return 0
    say "chromium is missing: installing it with apt-get"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { say "not root and no sudo: install chromium by hand"; exit 1; }
        sudo=(sudo)
    fi
    local apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
        --no-install-recommends chromium >&2
}

ensure_venv
ensure_deps requirements.txt requirements-dev.txt
ensure_chromium

if [[ "${IH_SKIP_SERVICES:-0}" != "1" ]]; then
    services_env="$(bash "${ROOT}/scripts/services.sh" start)"
    eval "${services_env}"
fi
PASSES="${IH_TEST_PASSES:-postgres sqlite}"
export DJANGO_SETTINGS_MODULE=integrations_site.settings.test

# One pass: pytest under the given environment, in a fresh VAR_DIR (the SQLite file, broker folders
# and file cache of that pass; removed afterwards). Prints the pass's time; returns pytest's status.
run_pass() {
    local name="$1" var_dir rc started
    var_dir="$(mktemp -d "${TMPDIR:-/tmp}/ih-test-${name}.XXXXXX")"
    # Kept after the pass (var/ is not tracked): the admin's browser screenshots, printed at its end.
    export IH_SCREENSHOTS_DIR="${ROOT}/var/screenshots/${name}"
    started=${SECONDS}
    say "pass ${name}: starting"
    set +e
    case "${name}" in
        postgres)
            : "${DATABASE_URL:?DATABASE_URL is not set}"
            : "${REDIS_URL:?REDIS_URL is not set}"
            env VAR_DIR="${var_dir}" DATABASE_URL="${DATABASE_URL}" REDIS_URL="${REDIS_URL}" \
                CELERY_BROKER_URL="${REDIS_URL}" "${VENV}/bin/python" -m pytest "${PYTEST_ARGS[@]}"
            ;;
        sqlite)
            env -u REDIS_URL VAR_DIR="${var_dir}" DATABASE_URL="sqlite:///${var_dir}/db.sqlite3" \
                CELERY_BROKER_URL="filesystem://" "${VENV}/bin/python" -m pytest "${PYTEST_ARGS[@]}"
            ;;
        *)
            say "unknown pass '${name}' (IH_TEST_PASSES takes postgres and/or sqlite)"
            return 2
            ;;
    esac
    rc=$?
    set -e
    rm -rf "${var_dir}"
    if [[ ${rc} -eq 5 ]]; then
        say "pass ${name}: pytest collected no tests: failing the run (a run that tests nothing must not pass)"
        rc=1
    fi
    TIMES+=("${name} $((SECONDS - started)) s (exit ${rc})")
    return "${rc}"
}

PYTEST_ARGS=("$@")
TIMES=()
status=0
for name in ${PASSES}; do
    run_pass "${name}" || status=1
done
for line in "${TIMES[@]}"; do
    say "pass ${line}"
done
exit "${status}"
