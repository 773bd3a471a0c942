#!/usr/bin/env bash
# Load figures against the release binary over loopback with wrk: hello at
# 1/32/128 connections, PATCH /v1/me with a session at 32, and /healthz
# latency alone and during a login (argon2) flood; plus the server's peak
# RSS. Each scenario runs for $SECONDS_PER_RUN seconds and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/plinth}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

sed -e "s|../target/plugins/|$PWD/target/plugins/|" -e "s|../policies/|$PWD/policies/|" \
    -e 's|listen = "127.0.0.1:8080"|listen = "127.0.0.1:0"|' examples/plinth.toml > "$work/plinth.toml"
cat >> "$work/plinth.toml" <<'TOML'

[rate_limits.classes.default]
per_address = "100000000/min"
per_principal = "100000000/min"
[rate_limits.classes.login]
per_address = "100000000/min"
[rate_limits.classes.email]
per_address = "100000000/min"
per_principal = "100000000/min"
TOML
"$BIN" serve --config "$work/plinth.toml" --data "$work/data" > "$work/out" 2> "$work/log" &
echo $! > "$work/pid"
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
base="http://$(sed 's/listening on //' "$work/out")"

run() { # name, wrk args...
  local name=$1; shift
  wrk -d "${SECONDS_PER_RUN}s" --latency "$@" > "$work/wrk" 2>&1
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk")
  printf '| %-44s | %10s | %9s | %9s |\n' "$name" "$rps" "$p50" "$p99"
}

echo "| scenario | req/s | p50 | p99 |"
echo "|---|---:|---:|---:|"

# The ceiling: bare hyper, same machine, same wrk settings.
BARE=${BARE:-$CARGO_TARGET_DIR/release/bare-hyper}
"$BARE" > "$work/bare.out" &
bare=$!
for _ in $(seq 100); do grep -q listening "$work/bare.out" 2>/dev/null && break; sleep 0.1; done
bare_base="http://$(sed 's/listening on //' "$work/bare.out")"
for c in 1 32 128; do run "bare hyper hello, $c connections" -t $((c < 2 ? 1 : 2)) -c "$c" "$bare_base/"; done
kill "$bare"
for c in 1 32 128; do run "GET /v1/hello, $c connections" -t $((c < 2 ? 1 : 2)) -c "$c" "$base/v1/hello"; done

# A signed-in user for PATCH /v1/me.
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
curl -s "$base/v1/accounts/signup" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"velvet lantern orchard","display_name":"Bench"}' > /dev/null
for _ in $(seq 50); do grep -q bench@example.com "$work/data/outbox.jsonl" 2>/dev/null && break; sleep 0.1; done
token=$(grep -o 'token=[0-9a-f]*' "$work/data/outbox.jsonl" | tail -1 | cut -d= -f2)
curl -s "$base/v1/accounts/verify" -H 'content-type: application/json' -d "{\"token\":\"$token\"}" > /dev/null
login=$(curl -s -D "$work/headers" "$base/v1/sessions" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"velvet lantern orchard"}')
csrf=$(echo "$login" | json "['csrf_token']")
cookie=$(grep -i '^set-cookie' "$work/headers" | sed 's/^[Ss]et-[Cc]ookie: //; s/;.*//')
cat > "$work/patch.lua" <<LUA
wrk.method = "PATCH"
wrk.body = '{"display_name":"Bench Mark"}'
wrk.headers["content-type"] = "application/json"
wrk.headers["cookie"] = "$cookie"
wrk.headers["x-csrf-token"] = "$csrf"
LUA
run "PATCH /v1/me (session, authz, plugin, write, audit), 32" -t 2 -c 32 -s "$work/patch.lua" "$base/v1/me"

run "GET /healthz alone, 1 connection" -t 1 -c 1 "$base/healthz"
cat > "$work/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"email":"bench@example.com","password":"wrong wrong wrong"}'
wrk.headers["content-type"] = "application/json"
LUA
wrk -d "${SECONDS_PER_RUN}s" -t 1 -c 32 -s "$work/login.lua" "$base/v1/sessions" > "$work/flood" 2>&1 &
flood=$!
sleep 0.5
run "GET /healthz during a 32-connection login flood" -t 1 -c 1 "$base/healthz"
wait "$flood"
printf '| %-44s | %10s | %9s | %9s |\n' "login flood (argon2 verify), 32 connections" "$(awk '/Requests\/sec/ {print $2}' "$work/flood")" "" ""
echo
echo "peak RSS of the server: $(awk '/VmHWM/ {print $2, $3}' /proc/"$(cat "$work/pid")"/status)"
