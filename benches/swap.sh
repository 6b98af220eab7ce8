#!/usr/bin/env bash
# Hot-swap benchmark: p99 and non-2xx responses while versions are swapped
# back and forth under continuous load, against steady state in the same run.
#
# Starts `scorehost serve --store` on loopback with a throwaway store, uploads
# two versions of the bundled logreg (0.1.0 and 0.1.0+model.2, whose
# intercept is 1 higher, with its own golden vector) through the admin API,
# then runs wrk (-t1 -c16) for DURATION seconds twice: once steady, once while
# a loop activates the two versions alternately SWAPS times. Prints swaps
# done, non-2xx, req/s and p99 of both runs and the p99 ratio.
#
# Bounded: two wrk runs of DURATION seconds; each swap is one admin call.
#
#   benches/swap.sh                         # DURATION=10 SWAPS=100
#   DURATION=5 SWAPS=50 benches/swap.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
SWAPS=${SWAPS:-100}
PORT=${PORT:-18180}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorehost-target}"

command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; apt-get install -y wrk >/dev/null; }
# The same package set as the other scripts, so features unify alike and
# nothing is rebuilt between them.
cargo build --release --locked -p scorehost-cli -p scorehost-benches --bin scorehost >&2
bin="$CARGO_TARGET_DIR/release/scorehost"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The newest staged build (older ones from other feature sets may linger).
staged=$(dirname "$(ls -t "$CARGO_TARGET_DIR"/release/build/*/out/plugins/logreg/plugin.toml | head -1)")
cp -r "$staged" "$work/v1"
cp -r "$staged" "$work/v2"
python3 - "$work/v2" <<'PY'
import json, math, sys, pathlib
d = pathlib.Path(sys.argv[1])
m = (d / "plugin.toml").read_text().replace('version = "0.1.0"', 'version = "0.1.0+model.2"')
(d / "plugin.toml").write_text(m)
w = json.loads((d / "model/weights.json").read_text())
w["intercept"] += 1.0
(d / "model/weights.json").write_text(json.dumps(w))
z = w["intercept"] + w["weights"]["amount_usd_log"] * 2.0
v = {"name": "shifted intercept", "input": {"amount_usd_log": 2.0}, "score": 1 / (1 + math.exp(-z)), "tolerance": 1e-9}
(d / "tests.jsonl").write_text(json.dumps(v) + "\n")
PY
(umask 077; python3 -c "import secrets; print(secrets.token_hex(16))" > "$work/token")
auth="Authorization: Bearer $(cat "$work/token")"
"$bin" --cache-dir "$work/cache" serve --store "$work/store" --admin-token-file "$work/token" \
  --addr "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
admin() { curl -s -o /dev/null -w '%{http_code}' -H "$auth" "$@"; }
for v in 0.1.0:v1 0.1.0+model.2:v2; do
  code=$(tar -C "$work/${v#*:}" -cf - . | admin -X PUT --data-binary @- "http://127.0.0.1:$PORT/admin/v1/plugins/logreg/versions/${v%%:*}")
  [ "$code" = 201 ] || { echo "upload ${v%%:*}: HTTP $code" >&2; cat "$work/server.log" >&2; exit 1; }
done
[ "$(admin -X POST "http://127.0.0.1:$PORT/admin/v1/plugins/logreg/versions/0.1.0/activate")" = 200 ]

echo '{"features": {"amount_usd_log": 6.0, "cross_border": true, "is_night": true}}' > "$work/body.json"
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
run_wrk() { wrk -t1 -c16 -d"${DURATION}s" --timeout 5s --latency -s "$work/post.lua" "http://127.0.0.1:$PORT/v1/plugins/logreg/score"; }
field() { awk -v k="$1" '$1==k {print $2}'; }
to_us() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v+0 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v*1000 } else { sub(/s$/, "", v); print v*1000000 } }'; }

steady=$(run_wrk)
run_wrk > "$work/swap.txt" &
wrk_pid=$!
sleep 0.5
# One client with a kept-alive connection makes every swap (a process per swap
# would cost this 2-core machine more CPU than the swap itself).
read -r done_swaps failed_swaps < <(python3 - "$PORT" "$(cat "$work/token")" "$SWAPS" "$DURATION" "${NOOP:-}" <<'PY'
import http.client, sys, time
port, token, swaps, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
noop = len(sys.argv) > 5 and sys.argv[5] == "noop"
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
interval = (duration - 1) / swaps
ok = failed = 0
for i in range(1, swaps + 1):
    v = "0.1.0+model.2" if i % 2 and not noop else "0.1.0"
    conn.request("POST", f"/admin/v1/plugins/logreg/versions/{v}/activate", headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse(); r.read()
    if r.status == 200: ok += 1
    else: failed += 1
    time.sleep(interval)
print(ok, failed)
PY
)
wait "$wrk_pid"
swapping=$(cat "$work/swap.txt")

report() { # label output
  local rps p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$2")
  p99=$(to_us "$(field 99% <<<"$2")")
  bad=$(awk '/Non-2xx/ {print $5}' <<<"$2"); bad=${bad:-0}
  local errs; errs=$(awk '/Socket errors/ {print}' <<<"$2")
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$rps" "$(to_us "$(field 50% <<<"$2")")" "$p99" "$bad${errs:+ ($errs)}"
  echo "$p99" > "$work/p99.$1"
}
echo
echo "wrk -t1 -c16 -d${DURATION}s on single-row logreg; $done_swaps swaps done ($failed_swaps failed) during the second run"
echo "| run | req/s | p50 µs | p99 µs | non-2xx |"
echo "|---|---:|---:|---:|---:|"
report steady "$steady"
report swapping "$swapping"
awk -v a="$(cat "$work/p99.steady")" -v b="$(cat "$work/p99.swapping")" 'BEGIN { printf "p99 during swaps / steady: %.2fx\n", b / a }'
