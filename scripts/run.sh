#!/usr/bin/env bash
# run.sh [lpgate options...]: installs the dependencies, builds lpgate and
# runs it in the foreground on http://127.0.0.1:8072/longpolling (or the
# port that -p/--port names).
#
# When no database is configured (no -d/--database, --db_host, --listen-dsn,
# -c, PGHOST or PGDATABASE), it starts a throw-away PostgreSQL cluster of
# its own (as the unprivileged user "postgres", in a temporary directory),
# creates Odoo's bus_bus table in a database "lpgate", and removes the
# cluster when lpgate exits.
#
# run.sh --print-url [lpgate options...] only prints the URL lpgate would
# serve on with those options (the port of -p N, -pN, --port=N or --port N;
# the last one wins; 8072 without any).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

# the port lpgate's command line asks for (lpgate's own default: 8072)
lpg_run_port() {
    local port=8072
    while [ "$#" -gt 0 ]; do
        case "$1" in
        -p|--port) [ "$#" -gt 1 ] && port=$2 && shift ;;
        --port=*) port=${1#--port=} ;;
        -p*) port=${1#-p} ;;
        --) break ;;
        esac
        shift
    done
    echo "$port"
}

if [ "${1:-}" = --print-url ]; then
    shift
    echo "http://127.0.0.1:$(lpg_run_port "$@")/longpolling"
    exit 0
fi

url="http://127.0.0.1:$(lpg_run_port "$@")/longpolling"

"$top/scripts/deps.sh"
"$top/scripts/build.sh" "$top/build"

args=("$@")
configured=no
for a in "$@"; do
    case "$a" in
    -d|--database*|--db_host*|--db-host*|--listen-dsn*|-c|--config*) configured=yes ;;
    esac
done
[ -n "${PGHOST:-}${PGDATABASE:-}" ] && configured=yes

cleanup() { :; }
if [ "$configured" = no ]; then
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    tmp=$(mktemp -d /tmp/lpgate-pg.XXXXXX)
    chmod 755 "$tmp"
    port=${LPGATE_PGPORT:-54329}
    as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    [ "$(id -u)" -eq 0 ] && chown postgres "$tmp"
    as_pg "$pgbin/initdb" -A trust -U postgres --nosync -D "$tmp/data" >/dev/null
    as_pg "$pgbin/pg_ctl" -w -D "$tmp/data" -l "$tmp/postgresql.log" \
        -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    cleanup() {
        as_pg "$pgbin/pg_ctl" -w -D "$tmp/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$tmp"
    }
    trap cleanup EXIT
    psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE lpgate"
    psql -q -h 127.0.0.1 -p "$port" -U postgres -d lpgate -c "
        CREATE TABLE bus_bus (id serial PRIMARY KEY, channel varchar,
            message varchar, create_date timestamp DEFAULT (now() at time zone 'UTC'),
            write_date timestamp DEFAULT (now() at time zone 'UTC'))"
    psql -q -h 127.0.0.1 -p "$port" -U postgres -d lpgate -f "$top/contrib/sql/lpgate.sql"
    args=(--db-host 127.0.0.1 --db-port "$port" --db-user postgres -d lpgate --demo "${args[@]}")
    cat <<EOT

No database configured: started a throw-away PostgreSQL cluster in $tmp
(127.0.0.1:$port, database "lpgate" with Odoo's bus_bus table); it is removed
when lpgate stops.

lpgate is starting on $url. Try:
    curl $url/health
    the demo chat in two browser windows: $url/demo
    psql -h 127.0.0.1 -p $port -U postgres -d lpgate -c \\
        "SELECT lpgate_send('demo-chat', '{\"from\": \"sql\", \"text\": \"hi\"}')"
Stop it with Ctrl-C.

EOT
fi

set +e
"$top/build/lpgate" "${args[@]}" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' TERM INT
while kill -0 $pid 2>/dev/null; do
    wait $pid
    rc=$?
done
cleanup
trap - EXIT
exit $rc
