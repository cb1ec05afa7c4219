#!/usr/bin/env bash
# SCIM and export figures for BENCHMARKS.md: a release portal on SQLite (loopback only), one
# account with a SCIM token, N users created through SCIM by 8 clients, then reads by userName,
# by externalId, pages, a filter that reads every user, and the Excel export. Usage:
#   cargo build --release && bash benches/scim/run.sh [N]
set -euo pipefail
n=${1:-2000}
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../../target/release/portal-operator"
work=$(mktemp -d)
port=18195
key=$("$bin" portal new-api-key)
PORTAL_BOOTSTRAP_API_KEY=$key "$bin" portal serve --listen 127.0.0.1:$port \
    --database-url "sqlite://$work/portal.db" > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz > /dev/null && break; sleep 0.1; done
api() { curl -sf -H "Authorization: Bearer $key" -H 'content-type: application/json' "$@"; }
account=$(api -d '{"type":"Partner","displayName":"Contoso"}' http://127.0.0.1:$port/v1/accounts | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
api -o /dev/null -d "{\"licenseType\":\"Standard\",\"quantity\":$((n * 2))}" http://127.0.0.1:$port/v1/accounts/$account/subscriptions
token=$(api -d '{"name":"bench"}' http://127.0.0.1:$port/v1/accounts/$account/scim-tokens | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
python3 "$here/load.py" http://127.0.0.1:$port/scim/v2 "$token" "$n"
for _ in 1 2 3 4 5; do
    curl -s -o "$work/users.xlsx" -w '%{time_total}\n' -H "Authorization: Bearer $key" \
        "http://127.0.0.1:$port/v1/accounts/$account/users/export"
done | sort -n | sed -n 3p | awk -v n="$n" '{ printf "export of %d users: median %.0f ms\n", n, $1 * 1000 }'
