#!/usr/bin/env bash
# Invitation creates/s against the release binary with wrk as the client (a separate process, so
# the server gets the machine's cores). Usage: benches/wrk/run.sh sqlite|postgres CONNECTIONS [SECONDS]
set -euo pipefail
backend=$1; connections=$2; seconds=${3:-10}
here=$(cd "$(dirname "$0")" && pwd)
bin=${PORTAL_BIN:-${CARGO_TARGET_DIR:-target}/release/portal-operator}
work=$(mktemp -d); chmod 755 "$work"
key=$("$bin" portal new-api-key)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg_pid=""
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
  if [ -n "$pg_pid" ]; then runuser -u postgres -- pg_ctl -D "$work/pg" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$backend" = postgres ]; then
  chown postgres "$work"
  runuser -u postgres -- initdb -D "$work/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  runuser -u postgres -- pg_ctl -D "$work/pg" -o "-p $pgport -k $work -c listen_addresses=127.0.0.1" -l "$work/pg.log" -w start >/dev/null
  pg_pid=yes
  url="postgres://postgres@127.0.0.1:$pgport/postgres"
else
  url="sqlite://$work/portal.db"
fi
PORTAL_LOG=warn PORTAL_BOOTSTRAP_API_KEY=$key "$bin" portal serve --listen "127.0.0.1:$port" --database-url "$url" &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
api() { curl -fs -H "Authorization: Bearer $key" -H 'content-type: application/json' "$@"; }
partner=$(api -d '{"type":"Partner","displayName":"Northwind"}' "http://127.0.0.1:$port/v1/accounts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
client=$(api -d "{\"type\":\"Client\",\"parentId\":\"$partner\",\"displayName\":\"Contoso\"}" "http://127.0.0.1:$port/v1/accounts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$here/create-invitations.lua" "http://127.0.0.1:$port" -- "$client" "$key"
curl -fs "http://127.0.0.1:$port/metrics" | grep "^portal_sqlite_" || true
