#!/usr/bin/env bash
# HTTP figures over loopback, each scenario for $SECONDS_PER_RUN seconds:
# hello from bare hyper (the ceiling), `wasmtime serve` (defaults, and tuned
# like plinth's pool) and plinth (the Rust hello, the wasi:http hello, the
# JavaScript and Python counters), at 1/32/128 connections (wrk, closed loop);
# PATCH /v1/me signed in, closed loop and at a fixed offered rate (oha);
# /healthz sampled at a fixed rate, alone and during a flood of real (argon2)
# sign-ins; change streams (benches/fanout.py); a 1 GiB upload, download and
# ranged reads (benches/media.py); /healthz and /v1/hello sampled while
# another address holds the server under a resource attack (benches/attack.py).
#
# Prints one tab-separated line per figure, which benches/report.py renders:
#   scenario  connections  req/s  p50 ms  p99 ms  failed-or-non-2xx
# `startup_ms  cold|warm  <ms>` for each start of plinth, and last
# `peak_rss_kib  <KiB>` for the plinth server.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
TOOLS=${PLINTH_BENCH_TOOLS:-$HOME/.cache/plinth-bench-tools}/bin
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
HELLO_RUNS=${HELLO_RUNS:-3}
[ "$HELLO_RUNS" -ge 1 ] || { echo "benches/load.sh: HELLO_RUNS must be at least 1" >&2; exit 1; }
PATCH_RATE=${PATCH_RATE:-1000}
HEALTHZ_RATE=${HEALTHZ_RATE:-500}
ATTACK_RATE=${ATTACK_RATE:-200}
CONNECTIONS=(1 32 128)
work=$(mktemp -d)
trap 'jobs -p | xargs -r kill 2>/dev/null || true; rm -rf "$work"' EXIT

# Waits for a server to print its address; echoes http://ADDR.
wait_for_address() { # log file, pattern before the address
  for _ in $(seq 200); do
    local addr
    addr=$(sed -n "s|.*$2\([0-9.:]*[0-9]\).*|\1|p" "$1" 2>/dev/null | head -1)
    [ -n "$addr" ] && { echo "http://$addr"; return; }
    sleep 0.05
  done
  echo "server did not start; its output:" >&2; cat "$1" >&2; exit 1
}

# wrk prints latencies as 71.00us / 3.93ms / 1.02s; figures are in ms.
to_ms() { awk '{ v = $1 + 0; if ($1 ~ /us$/) v /= 1000; else if ($1 ~ /[0-9]s$/) v *= 1000; printf "%.3f", v }'; }

wrk_report() { # scenario, connections, wrk output
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(awk '/Requests\/sec/ {print $2}' "$3")" \
    "$(awk '$1=="50%" {print $2}' "$3" | to_ms)" "$(awk '$1=="99%" {print $2}' "$3" | to_ms)" \
    "$(awk '/Non-2xx/ {print $NF}' "$3" | grep . || echo 0)"
}

wrk_run() { # scenario, connections, url, [lua script]
  local c=$2 script=${4:-}
  wrk -d "${SECONDS_PER_RUN}s" -t $((c < 2 ? 1 : 2)) -c "$c" --latency ${script:+-s "$script"} "$3" > "$work/wrk.out"
  wrk_report "$1" "$c" "$work/wrk.out"
}

# oha at a fixed offered rate, correcting for coordinated omission.
oha_run() { # scenario, connections, rate, url, [oha options]
  local scenario=$1 c=$2 rate=$3 url=$4
  shift 4
  "$TOOLS/oha" -z "${SECONDS_PER_RUN}s" -c "$c" -q "$rate" --latency-correction --no-tui --output-format json \
    "$@" "$url" > "$work/oha.json"
  python3 - "$work/oha.json" "$scenario" "$c" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = sum(n for code, n in r.get("statusCodeDistribution", {}).items() if not code.startswith("2"))
# No latencies when no request succeeded: report them as NaN with the
# failures. Requests cut by oha's own deadline at the end are not failures.
errors = sum(n for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
pct = {k: (v if v is not None else float("nan")) for k, v in r["latencyPercentiles"].items()}
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{r['summary']['requestsPerSec']:.2f}\t{pct['p50'] * 1000:.3f}\t{pct['p99'] * 1000:.3f}\t{bad + errors}")
PY
}

# The hello figures are the median run of $HELLO_RUNS (by req/s), with the
# failures of all of them: single runs on a 2-core VM land in one of two
# modes some 20 % apart, whichever server is measured.
hello_at_each() { # scenario, url
  for c in "${CONNECTIONS[@]}"; do
    for _ in $(seq "$HELLO_RUNS"); do wrk_run "$1" "$c" "$2"; done | sort -t$'\t' -k3,3g |
      awk -F'\t' -v OFS='\t' -v mid=$(((HELLO_RUNS + 1) / 2)) '{ failed += $6 } NR == mid { line = $0 }
        END { $0 = line; $6 = failed; print }'
  done
}

# The ceiling.
"$CARGO_TARGET_DIR/release/bare-hyper" > "$work/bare.log" &
bare=$!
hello_at_each "bare hyper hello" "$(wait_for_address "$work/bare.log" "listening on ")/v1/hello"
kill "$bare"

# wasmtime serve, as shipped and with the pool reset tuned as plinth's is.
wasi_hello="$CARGO_TARGET_DIR/wasm32-wasip2/release/wasi_hello.wasm"
tuned=pooling-allocator=y,pooling-pagemap-scan=auto,pooling-memory-keep-resident=131072,pooling-table-keep-resident=131072
for variant in defaults tuned; do
  opts=()
  [ "$variant" = tuned ] && opts=(-O "$tuned")
  "$TOOLS/wasmtime" serve -S cli "${opts[@]}" --addr 127.0.0.1:0 "$wasi_hello" > "$work/serve.log" 2>&1 &
  serve=$!
  hello_at_each "wasmtime serve hello ($variant)" "$(wait_for_address "$work/serve.log" "Serving HTTP on http://")/v1/hello"
  kill "$serve"
done

# plinth on the example configuration, rate limits raised out of the way
# (plinth-defaults.toml, for the attack scenarios); for the throughput runs
# (plinth.toml) also the per-client shares, as every load generator
# connection comes from one address.
# The forms the example ships, and a 12-field one for the validation figure.
cp -r examples/forms "$work/forms"
cat > "$work/forms/bench.form.json" <<'JSON'
{ "id": "bench", "version": 1, "title": "contact-title",
  "fields": [
    { "name": "name", "type": "text", "label": "contact-name", "required": true, "max_length": 80 },
    { "name": "email", "type": "email", "label": "contact-email", "required": true },
    { "name": "topic", "type": "choice", "label": "contact-topic", "required": true,
      "options": [ { "value": "question", "label": "contact-topic-question" }, { "value": "bug", "label": "contact-topic-bug" } ] },
    { "name": "other", "type": "text", "label": "contact-other", "max_length": 80 },
    { "name": "message", "type": "long-text", "label": "contact-message", "required": true, "max_length": 2000 },
    { "name": "copies", "type": "number", "label": "contact-copies", "integer": true, "minimum": 0, "maximum": 5 },
    { "name": "consent", "type": "boolean", "label": "contact-consent", "required": true },
    { "name": "phone", "type": "text", "label": "contact-name", "pattern": "^[0-9 +()-]{5,20}$" },
    { "name": "city", "type": "text", "label": "contact-name", "max_length": 60 },
    { "name": "start", "type": "date", "label": "contact-name" },
    { "name": "end", "type": "date", "label": "contact-name" },
    { "name": "tags", "type": "multi-choice", "label": "contact-topic", "max_items": 2,
      "options": [ { "value": "question", "label": "contact-topic-question" }, { "value": "bug", "label": "contact-topic-bug" } ] }
  ],
  "rules": [ { "code": "dates_in_order", "message": "contact-other-needed", "check": { "before": ["start", "end"] } } ] }
JSON
sed -e "s|../target/plugins/|$PWD/target/plugins/|" -e "s|../policies/|$PWD/policies/|" \
  -e "s|\"../plugins/forms/locales\"|\"$PWD/plugins/forms/locales\"|" -e "s|\"forms/locales\"|\"$PWD/examples/forms/locales\"|" \
  -e "s|assets = \"forms\"|assets = \"$work/forms\"|" \
  -e 's|listen = "127.0.0.1:8080"|listen = "127.0.0.1:0"|' examples/plinth.toml > "$work/plinth-defaults.toml"
cat >> "$work/plinth-defaults.toml" <<'TOML'

[rate_limits.classes.default]
per_address = "100000000/min"
per_principal = "100000000/min"
[rate_limits.classes.login]
per_address = "100000000/min"
[rate_limits.classes.email]
per_address = "100000000/min"
per_principal = "100000000/min"
[rate_limits.classes.upload]
per_address = "100000000/min"
per_principal = "100000000/min"
[rate_limits.classes.media]
per_address = "100000000/min"
per_principal = "100000000/min"
[rate_limits.classes.form_submit]
per_address = "100000000/min"
per_principal = "100000000/min"
[rate_limits.classes.page]
per_address = "100000000/min"
per_principal = "100000000/min"
TOML
sed -e 's|^max_in_flight = 256$|max_in_flight = 256\nmax_in_flight_per_client = 256\nmax_connections_per_client = 16384|' \
  -e 's|^max_connections = 1024$|max_connections = 16384|' \
  -e 's|^max_total = 10000$|max_total = 16000|' -e 's|^max_per_client = 16$|max_per_client = 16000|' \
  "$work/plinth-defaults.toml" > "$work/plinth.toml"
for raised in max_connections_per_client "max_connections = 16384" "max_per_client = 16000"; do
  grep -q "$raised" "$work/plinth.toml" || { echo "benches/load.sh: could not raise $raised" >&2; exit 1; }
done
# Start-up, exec to `listening on`: first on an empty data directory (both
# components compiled), then twice more with the compiled cache warm; the
# last server stays up for the scenarios below.
plinth=
for start in cold warm warm; do
  [ -z "$plinth" ] || { kill "$plinth"; wait "$plinth" || true; }
  started=$(date +%s%N)
  target/release/plinth serve --config "$work/plinth.toml" --data "$work/data" > "$work/plinth.log" 2> "$work/plinth.err" &
  plinth=$!
  until grep -q "listening on" "$work/plinth.log"; do
    kill -0 "$plinth" 2> /dev/null || { cat "$work/plinth.err" >&2; exit 1; }
    sleep 0.002
  done
  printf 'startup_ms\t%s\t%s\n' "$start" $((($(date +%s%N) - started) / 1000000))
done
base=$(wait_for_address "$work/plinth.log" "listening on ")
hello_at_each "plinth GET /v1/hello (edge + plugin)" "$base/v1/hello"
hello_at_each "plinth GET /wasi/v1/hello (edge + the wasi:http hello)" "$base/wasi/v1/hello"

# A signed-in user: sign up, verify through the outbox file, sign in.
email=bench@example.com password="velvet lantern orchard"
curl -sf "$base/v1/accounts/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"display_name\":\"Bench\"}" > /dev/null
for _ in $(seq 100); do grep -q "$email" "$work/data/outbox.jsonl" 2>/dev/null && break; sleep 0.05; done
token=$(grep -o 'token=[0-9a-f]*' "$work/data/outbox.jsonl" | tail -1 | cut -d= -f2)
curl -sf "$base/v1/accounts/verify" -H 'content-type: application/json' -d "{\"token\":\"$token\",\"password\":\"$password\"}" > /dev/null
sign_in() { # sets $cookie and $csrf
  local login
  login=$(curl -sf -D "$work/headers" "$base/v1/sessions" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}")
  csrf=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])' <<< "$login")
  cookie=$(sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' "$work/headers")
}
sign_in

# One counter read through the JavaScript and the Python plugin (the same
# work; each instance is the language's whole runtime).
echo "wrk.headers[\"cookie\"] = \"$cookie\"" > "$work/cookie.lua"
for language in js py; do
  for c in "${CONNECTIONS[@]}"; do
    wrk_run "plinth GET /v1/$language/counters/{name} (edge + $language plugin)" "$c" \
      "$base/v1/$language/counters/visits" "$work/cookie.lua"
  done
done

# Every PATCH changes the name (a PATCH that changes nothing writes nothing).
cat > "$work/patch.lua" <<LUA
wrk.method = "PATCH"
wrk.headers["content-type"] = "application/json"
wrk.headers["cookie"] = "$cookie"
wrk.headers["x-csrf-token"] = "$csrf"
request = function()
  return wrk.format(nil, nil, nil, '{"display_name":"Bench ' .. math.random(1, 1000000000) .. '"}')
end
LUA
seq 1 100000 | sed 's/.*/{"display_name":"Bench &"}/' > "$work/patch-bodies"
wrk_run "plinth PATCH /v1/me, closed loop" 32 "$base/v1/me" "$work/patch.lua"

# The same requests offered at a fixed rate: latency at a stated load.
oha_run "plinth PATCH /v1/me at $PATCH_RATE req/s offered" 32 "$PATCH_RATE" "$base/v1/me" \
  -m PATCH -T application/json -H "cookie: $cookie" -H "x-csrf-token: $csrf" -Z "$work/patch-bodies"

# The forms plugin: a valid 12-field submission validated (the dry run:
# shape, the host's schema check with the compiled schema cached, rules),
# and the form's page rendered, each at a fixed rate.
cat > "$work/form-data.json" <<'JSON'
{"data": {"name": "Ada Lovelace", "email": "ada@example.com", "topic": "question", "message": "A question about my order.",
          "copies": 1, "consent": true, "phone": "+48 123 456 789", "city": "Kraków", "start": "2026-11-01",
          "end": "2026-11-30", "tags": ["bug"]}}
JSON
oha_run "plinth POST /v1/forms/{id}/validate (12 fields) at ${FORM_RATE:-500} req/s offered" 32 "${FORM_RATE:-500}" \
  "$base/v1/forms/bench/validate" -m POST -T application/json -D "$work/form-data.json"
oha_run "plinth GET /forms/{id} (12-field page, pl) at ${PAGE_RATE:-200} req/s offered" 8 "${PAGE_RATE:-200}" \
  "$base/forms/bench?locale=pl"

# The state plugin: 100 documents of about 2 KiB, patched at a fixed rate
# over 32 connections (If-Match: *, a random document each time). Below, one
# document's change feed is followed by 1,000 subscribers (fan-out latency)
# and by 10,000 (memory per idle stream).
document=$(python3 -c 'import json; print(json.dumps({"title": "bench", "body": "x" * 2000}))')
for i in $(seq -w 0 99); do
  curl -sf -X PUT "$base/v1/state/notes/bench$i" -H 'content-type: application/json' -H 'if-none-match: *' \
    -H "cookie: $cookie" -H "x-csrf-token: $csrf" -d "$document" > /dev/null
done
oha_run "plinth PATCH /v1/state (2 KiB document) at $PATCH_RATE req/s offered" 32 "$PATCH_RATE" \
  "$base/v1/state/notes/bench[0-9]{2}" --rand-regex-url -m PATCH -T application/merge-patch+json \
  -H 'if-match: *' -H "cookie: $cookie" -H "x-csrf-token: $csrf" -d '{"done":true}'

# /healthz sampled at a low fixed rate, alone and while 32 connections sign
# in as fast as they can (each sign-in is an argon2 verification).
oha_run "plinth GET /healthz sampled, alone" 1 "$HEALTHZ_RATE" "$base/healthz"
cat > "$work/login.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"email":"$email","password":"$password"}'
wrk.headers["content-type"] = "application/json"
LUA
wrk -d "$((SECONDS_PER_RUN + 1))s" -t 2 -c 32 --latency -s "$work/login.lua" "$base/v1/sessions" > "$work/flood.out" &
flood=$!
sleep 0.5
oha_run "plinth GET /healthz sampled, during the login flood" 1 "$HEALTHZ_RATE" "$base/healthz"
wait "$flood"
wrk_report "plinth POST /v1/sessions (argon2 login flood)" 32 "$work/flood.out"
printf 'peak_rss_kib\t%s\n' "$(awk '/VmHWM/ {print $2}' "/proc/$plinth/status")"

# Each memory figure on a freshly started server (freed memory is reused).
restart_plinth() { # config
  kill "$plinth"
  wait "$plinth" || true
  target/release/plinth serve --config "$1" --data "$work/data" > "$work/plinth.log" 2> "$work/plinth.err" &
  plinth=$!
  base=$(wait_for_address "$work/plinth.log" "listening on ")
}
for protocol in http1 h2; do
  restart_plinth "$work/plinth.toml"
  sign_in # the login flood ended the older sessions (at most 100 per account)
  python3 benches/fanout.py "$protocol" "${base#http://}" "$cookie" "$csrf" /v1/state/notes/bench00 "$plinth" 1000 10000
done

# Media: a 1 GiB file uploaded with tus (8 MiB PATCHes) and downloaded,
# beside curl to and from bare hyper serving files, with the server's RSS
# growth; then 64 KiB ranges from its middle at a fixed rate.
restart_plinth "$work/plinth.toml"
sign_in
mkdir -p "$work/files"
"$CARGO_TARGET_DIR/release/bare-hyper" "$work/files" > "$work/bare-files.log" &
bare_files=$!
RANGE_RATE=${RANGE_RATE:-500} python3 benches/media.py "$base" "$plinth" "$cookie" "$csrf" \
  "$(wait_for_address "$work/bare-files.log" "listening on ")" "${MEDIA_MIB:-1024}" "$work/files"
kill "$bare_files"

# Another address (127.0.0.2) attacks a plinth with the default shares:
# 1,500 silent connections and 300 slow bodies, then one HTTP/2 connection
# holding every stream it may open without bodies. This address is sampled
# meanwhile.
restart_plinth "$work/plinth-defaults.toml"
for mode in silent streams; do
  python3 benches/attack.py "$mode" "${base#http://}" 127.0.0.2 &
  attack=$!
  sleep 2
  for path in /healthz /v1/hello; do
    oha_run "plinth GET $path sampled, another address attacking ($mode)" 1 "$ATTACK_RATE" "$base$path"
  done
  kill "$attack"
  wait "$attack" 2> /dev/null || true
done
