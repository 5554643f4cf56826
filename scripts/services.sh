#!/usr/bin/env bash
# Private PostgreSQL and Redis instances on loopback, for the test suite.
#
# Usage:
#   bash scripts/services.sh [start]   start (or reuse) both, print `export ...` lines
#   bash scripts/services.sh stop      stop both
#   bash scripts/services.sh status    report whether each one answers
#   bash scripts/services.sh env       print the `export ...` lines only
#   source scripts/services.sh         start (or reuse) both and export the URLs
#                                      into the current shell
#
# Typical use from another script:   eval "$(bash scripts/services.sh)"
#
# Progress goes to stderr; stdout carries only the `export` lines, so the
# output can be eval'ed.  No init system is used: both servers run as plain
# background daemons whose files live under one directory.
#
# Settings (environment):
#   IH_SERVICES_DIR  where data, sockets, pidfiles and logs live (default /tmp/ih-services)
#   IH_PG_PORT       PostgreSQL TCP port on 127.0.0.1 (default 55432)
#   IH_REDIS_PORT    Redis TCP port on 127.0.0.1 (default 56379)
#
# Missing binaries are installed with apt-get (postgresql, redis-server).
# The PostgreSQL cluster is disposable test data: fsync is off, and a cluster
# left by an interrupted initdb or made by another major version is recreated.

# When sourced, run this file as a child process and import what it prints,
# so the caller's shell options (set -e and friends) are left untouched.
if [[ "${BASH_SOURCE[0]}" != "${0}" ]]; then
    if __ih_services_out="$(bash "${BASH_SOURCE[0]}" start)"; then
        eval "${__ih_services_out}"
        unset __ih_services_out
        return 0
    else
        unset __ih_services_out
        return 1
    fi
fi

set -euo pipefail

SERVICES_DIR="${IH_SERVICES_DIR:-/tmp/ih-services}"
PG_PORT="${IH_PG_PORT:-55432}"
REDIS_PORT="${IH_REDIS_PORT:-56379}"
PG_USER="ih"
PG_PASSWORD="ih"
PG_DB="ih"

PG_DATA="${SERVICES_DIR}/pg"
PG_SOCKET_DIR="${SERVICES_DIR}/pg-run"
PG_LOG="${SERVICES_DIR}/postgresql.log"
REDIS_DIR="${SERVICES_DIR}/redis"
REDIS_PIDFILE="${SERVICES_DIR}/redis.pid"
REDIS_LOG="${SERVICES_DIR}/redis.log"

DATABASE_URL="postgres://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/${PG_DB}"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"

export LC_ALL=C

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------- install --

pg_bindir() {
    # Highest installed major version.
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "${d}" && -x "${d}/initdb" ]]; then
        printf '%s\n' "${d}"
    fi
}

have_binaries() {
    [[ -n "$(pg_bindir)" ]] && command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1
}

install_binaries() {
    have_binaries && return 0
    log "PostgreSQL or Redis is missing: installing with apt-get (postgresql, redis-server)"
    local sudo=()
    if ! is_root; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install postgresql and redis-server by hand"
        sudo=(sudo)
    fi
    # Wait for a concurrent apt/dpkg run instead of failing on its lock.
    local apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
        --no-install-recommends postgresql redis-server >&2
    have_binaries || die "apt-get finished but initdb or redis-server is still missing"
}

# ------------------------------------------------------------- postgresql --

# Run a PostgreSQL server-side command as the user owning the cluster:
# `postgres` when we are root (the server refuses to run as root), else ourselves.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_ready() {
    "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "${PG_PORT}" -t 2 >/dev/null 2>&1
}

ensure_pg_os_user() {
    is_root || return 0
    if ! id -u postgres >/dev/null 2>&1; then
        log "creating the postgres OS user"
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

# True when the pid is a live (not zombie) process whose name contains $2.
pid_is_named() {
    local pid="$1" name="$2" state
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    grep -q -- "${name}" "/proc/${pid}/comm" 2>/dev/null || return 1
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/${pid}/status" 2>/dev/null || true)"
    [[ -n "${state}" && "${state}" != "Z" && "${state}" != "X" ]]
}

pid_is_postgres() { pid_is_named "$1" postgres; }
pid_is_redis() { pid_is_named "$1" redis; }

# Remove a postmaster.pid / socket lock left by a server that is gone (e.g.
# killed with -9, or a machine reused with a recycled pid).
clear_stale_pg_locks() {
    local f pid
    for f in "${PG_DATA}/postmaster.pid" "${PG_SOCKET_DIR}/.s.PGSQL.${PG_PORT}.lock"; do
        [[ -f "${f}" ]] || continue
        pid="$(head -n 1 "${f}" 2>/dev/null | tr -d '[:space:]' || true)"
        if ! pid_is_postgres "${pid}"; then
            log "removing stale lock ${f} (pid ${pid:-?} is not a running postgres)"
            rm -f "${f}"
            if [[ "${f}" == *.lock ]]; then
                rm -f "${PG_SOCKET_DIR}/.s.PGSQL.${PG_PORT}"
            fi
        fi
    done
}

pg_cluster_ok() {
    local bindir="$1" major
    [[ -f "${PG_DATA}/PG_VERSION" && -f "${PG_DATA}/postgresql.conf" && -f "${PG_DATA}/pg_hba.conf" ]] || return 1
    major="$(basename "$(dirname "${bindir}")")"
    [[ "$(cat "${PG_DATA}/PG_VERSION")" == "${major}" ]]
}

pg_prepare_dirs() {
    mkdir -p "${SERVICES_DIR}" "${PG_SOCKET_DIR}"
    touch "${PG_LOG}"
    if is_root; then
        chmod 755 "${SERVICES_DIR}"
        chown postgres: "${PG_SOCKET_DIR}" "${PG_LOG}"
        [[ -d "${PG_DATA}" ]] && chown -R postgres: "${PG_DATA}"
        # The server user must be able to reach the services directory.
        runuser -u postgres -- test -w "${PG_SOCKET_DIR}" \
            || die "user postgres cannot write ${PG_SOCKET_DIR}: pick an IH_SERVICES_DIR it can reach (e.g. under /tmp)"
    fi
    chmod 775 "${PG_SOCKET_DIR}"
}

pg_init() {
    local bindir="$1"
    if [[ -e "${PG_DATA}" ]]; then
        log "discarding unusable cluster at ${PG_DATA}"
        rm -rf "${PG_DATA}"
    fi
    mkdir -p "${PG_DATA}"
    chmod 700 "${PG_DATA}"
    is_root && chown postgres: "${PG_DATA}"
    log "initdb ${PG_DATA}"
    as_pg "${bindir}/initdb" -D "${PG_DATA}" -U postgres --auth=trust \
        -E UTF8 --no-locale --no-sync >>"${PG_LOG}" 2>&1 \
        || { tail -n 30 "${PG_LOG}" >&2; die "initdb failed (log: ${PG_LOG})"; }
}

# Settings live in their own file, rewritten at every start so a changed
# port or services dir is picked up by an existing cluster.
pg_write_config() {
    local conf="${PG_DATA}/ih-test.conf"
    cat >"${conf}" <<EOF
# Written by scripts/services.sh at every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = ${PG_PORT}
unix_socket_directories = '${PG_SOCKET_DIR}'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if ! grep -q "^include_if_exists = 'ih-test.conf'" "${PG_DATA}/postgresql.conf"; then
        printf "\ninclude_if_exists = 'ih-test.conf'\n" >>"${PG_DATA}/postgresql.conf"
    fi
    # Trust on the local socket and on loopback only.
    cat >"${PG_DATA}/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
host    all       all   ::1/128        trust
EOF
    is_root && chown postgres: "${conf}" "${PG_DATA}/postgresql.conf" "${PG_DATA}/pg_hba.conf"
    return 0
}

pg_ensure_role_and_db() {
    local bindir="$1"
    local psql=("${bindir}/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PG_PORT}" -U postgres -d postgres)
    "${psql[@]}" >/dev/null <<EOF
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PG_USER}') THEN
        CREATE ROLE ${PG_USER} LOGIN SUPERUSER PASSWORD '${PG_PASSWORD}';
    ELSE
        ALTER ROLE ${PG_USER} LOGIN SUPERUSER PASSWORD '${PG_PASSWORD}';
    END IF;
END
\$\$;
EOF
    if [[ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'")" != "1" ]]; then
        log "creating database ${PG_DB}"
        "${psql[@]}" -c "CREATE DATABASE ${PG_DB} OWNER ${PG_USER}" >/dev/null
    fi
}

pg_start() {
    local bindir
    bindir="$(pg_bindir)"
    if pg_ready; then
        log "PostgreSQL already answering on 127.0.0.1:${PG_PORT}"
    else
        ensure_pg_os_user
        pg_prepare_dirs
        pg_cluster_ok "${bindir}" || pg_init "${bindir}"
        pg_write_config
        clear_stale_pg_locks
        log "starting PostgreSQL on 127.0.0.1:${PG_PORT} (data ${PG_DATA})"
        if ! as_pg "${bindir}/pg_ctl" -D "${PG_DATA}" -l "${PG_LOG}" -w -t 60 -s start </dev/null >&2; then
            tail -n 30 "${PG_LOG}" >&2 || true
            die "PostgreSQL did not start (log: ${PG_LOG})"
        fi
        local i
        for ((i = 0; i < 60; i++)); do
            pg_ready && break
            sleep 0.5
        done
        pg_ready || { tail -n 30 "${PG_LOG}" >&2; die "PostgreSQL does not answer on 127.0.0.1:${PG_PORT}"; }
    fi
    pg_ensure_role_and_db "${bindir}"
}

pg_stop() {
    local bindir
    bindir="$(pg_bindir)"
    if [[ -z "${bindir}" ]]; then
        log "PostgreSQL is not installed"
        return 0
    fi
    if [[ -f "${PG_DATA}/postmaster.pid" ]] && pid_is_postgres "$(head -n 1 "${PG_DATA}/postmaster.pid" | tr -d '[:space:]')"; then
        log "stopping PostgreSQL (data ${PG_DATA})"
        as_pg "${bindir}/pg_ctl" -D "${PG_DATA}" -m fast -w -t 60 -s stop </dev/null >&2 || true
    elif pg_ready; then
        log "something answers on 127.0.0.1:${PG_PORT} but it is not the cluster in ${PG_DATA}: left alone"
    else
        log "PostgreSQL is not running"
    fi
    clear_stale_pg_locks
}

# ------------------------------------------------------------------ redis --

redis_ready() {
    [[ "$(redis-cli -h 127.0.0.1 -p "${REDIS_PORT}" ping 2>/dev/null)" == "PONG" ]]
}

redis_start() {
    if redis_ready; then
        log "Redis already answering on 127.0.0.1:${REDIS_PORT}"
        return 0
    fi
    mkdir -p "${REDIS_DIR}"
    # A pidfile without a live redis-server behind it is stale.
    if [[ -f "${REDIS_PIDFILE}" ]]; then
        local pid
        pid="$(tr -d '[:space:]' <"${REDIS_PIDFILE}" 2>/dev/null || true)"
        if ! pid_is_redis "${pid}"; then
            log "removing stale ${REDIS_PIDFILE}"
        fi
        rm -f "${REDIS_PIDFILE}"
    fi
    log "starting Redis on 127.0.0.1:${REDIS_PORT}"
    redis-server \
        --bind 127.0.0.1 \
        --port "${REDIS_PORT}" \
        --protected-mode yes \
        --daemonize yes \
        --pidfile "${REDIS_PIDFILE}" \
        --logfile "${REDIS_LOG}" \
        --dir "${REDIS_DIR}" \
        --save "" \
        --appendonly no \
        --databases 16 \
        </dev/null >/dev/null 2>&1 \
        || { tail -n 20 "${REDIS_LOG}" >&2 2>/dev/null || true; die "redis-server failed to start (log: ${REDIS_LOG})"; }
    local i
    for ((i = 0; i < 50; i++)); do
        redis_ready && return 0
        sleep 0.2
    done
    tail -n 20 "${REDIS_LOG}" >&2 2>/dev/null || true
    die "Redis does not answer on 127.0.0.1:${REDIS_PORT} (log: ${REDIS_LOG})"
}

redis_stop() {
    if ! command -v redis-cli >/dev/null 2>&1; then
        log "Redis is not installed"
        return 0
    fi
    if redis_ready; then
        log "stopping Redis on 127.0.0.1:${REDIS_PORT}"
        redis-cli -h 127.0.0.1 -p "${REDIS_PORT}" shutdown nosave >/dev/null 2>&1 || true
        local i
        for ((i = 0; i < 50; i++)); do
            redis_ready || break
            sleep 0.2
        done
    else
        log "Redis is not running"
    fi
    # Fall back to the pidfile if the server ignored the shutdown.
    if [[ -f "${REDIS_PIDFILE}" ]]; then
        local pid
        pid="$(tr -d '[:space:]' <"${REDIS_PIDFILE}" 2>/dev/null || true)"
        if pid_is_redis "${pid}"; then
            kill "${pid}" 2>/dev/null || true
        fi
        rm -f "${REDIS_PIDFILE}"
    fi
}

# ------------------------------------------------------------------- main --

print_env() {
    printf 'export DATABASE_URL=%s\n' "${DATABASE_URL}"
    printf 'export REDIS_URL=%s\n' "${REDIS_URL}"
}

cmd="${1:-start}"
case "${cmd}" in
    start)
        install_binaries
        pg_start
        redis_start
        log "ready: DATABASE_URL=${DATABASE_URL} REDIS_URL=${REDIS_URL}"
        print_env
        ;;
    stop)
        redis_stop
        pg_stop
        ;;
    status)
        rc=0
        if [[ -n "$(pg_bindir)" ]] && pg_ready; then
            log "PostgreSQL: up on 127.0.0.1:${PG_PORT}"
        else
            log "PostgreSQL: down"; rc=1
        fi
        if command -v redis-cli >/dev/null 2>&1 && redis_ready; then
            log "Redis: up on 127.0.0.1:${REDIS_PORT}"
        else
            log "Redis: down"; rc=1
        fi
        exit "${rc}"
        ;;
    env)
        print_env
        ;;
    -h | --help | help)
        sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        ;;
    *)
        die "unknown command '${cmd}' (expected start, stop, status or env)"
        ;;
esac
