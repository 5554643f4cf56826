#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args...]
#
# Creates .venv when missing, installs requirements.txt + requirements-dev.txt
# when they changed, starts (or reuses) private PostgreSQL and Redis on
# loopback through scripts/services.sh, then runs pytest with the given
# arguments.  A run that collects no test fails.
#
# IH_SKIP_SERVICES=1 skips scripts/services.sh and uses DATABASE_URL and
# REDIS_URL from the environment as they are.
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

ensure_venv
ensure_deps requirements.txt requirements-dev.txt

if [[ "${IH_SKIP_SERVICES:-0}" != "1" ]]; then
    services_env="$(bash "${ROOT}/scripts/services.sh" start)"
    eval "${services_env}"
fi
: "${DATABASE_URL:?DATABASE_URL is not set}"
: "${REDIS_URL:?REDIS_URL is not set}"
export DATABASE_URL REDIS_URL
export CELERY_BROKER_URL="${REDIS_URL}"
export DJANGO_SETTINGS_MODULE=integrations_site.settings.test

set +e
"${VENV}/bin/python" -m pytest "$@"
rc=$?
set -e

if [[ ${rc} -eq 5 ]]; then
    say "pytest collected no tests: failing the run (a run that tests nothing must not pass)"
    exit 1
fi
exit "${rc}"
