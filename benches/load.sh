#!/usr/bin/env bash
# HTTP load benchmark: scorehost vs the native in-process baseline, side by side.
#
# Starts, on loopback only: `scorehost serve` twice (wasm calls as futures on
# the async workers — the default — and on the blocking pool) and
# `native-baseline` (the same
# logreg/gbdt code compiled natively behind a minimal hyper server). Then, for
# each scenario — single-row logreg, single-row gbdt, a batch of 100 logreg
# rows — runs wrk at fixed concurrency against each server in turn (interleaved,
# ROUNDS times) and prints req/s, p50 and p99 with the ratios to the baseline.
#
# Bounded: every wrk run lasts DURATION seconds; the whole run takes about
# 3 scenarios x 3 servers x ROUNDS x DURATION seconds. Servers are killed on exit.
#
#   benches/load.sh                      # DURATION=10 CONNECTIONS=16 ROUNDS=2
#   DURATION=5 ROUNDS=1 benches/load.sh  # quick pass
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-2}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorehost-target}"

command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; apt-get install -y wrk >/dev/null; }
cargo build --release --locked -p scorehost -p scorehost-benches --bin scorehost --bin native-baseline >&2
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$work" <<'PY'
import json, sys, os, glob
work = sys.argv[1]
logreg = {"amount_usd_log": 6.0, "cross_border": True, "email_domain_free": True, "email_domain_disposable": False,
          "email_local_digits": 3, "is_night": True, "mcc_high_risk": False, "ip_private": False}
fixtures = sorted(glob.glob("plugins/gbdt/fixtures/xgb-*/binary/cases.json"))[-1]
cases = json.load(open(fixtures))
gbdt = dict(zip(cases["feature_names"], cases["rows"][0]))
json.dump({"features": logreg}, open(os.path.join(work, "logreg-1.json"), "w"))
json.dump({"features": gbdt}, open(os.path.join(work, "gbdt-1.json"), "w"))
json.dump({"instances": [logreg] * 100}, open(os.path.join(work, "logreg-100.json"), "w"))
PY
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "r")
wrk.body = f:read("*a")
f:close()
LUA

start() { # name port cmd...
  local name=$1 port=$2; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/healthz" || curl -s -o /dev/null -X POST "http://127.0.0.1:$port/v1/plugins/logreg/score" -d '{}'; then return 0; fi
    sleep 0.2
  done
  echo "$name did not start; log:" >&2; cat "$work/$name.log" >&2; exit 1
}
start scorehost 18080 "$bin/scorehost" --cache-dir "$work/cache" serve --addr 127.0.0.1:18080
start scorehost-blocking 18081 "$bin/scorehost" --cache-dir "$work/cache" serve --addr 127.0.0.1:18081 --call-mode blocking
start native 18090 "$bin/native-baseline" 127.0.0.1:18090

declare -A port=([scorehost]=18080 [scorehost-blocking]=18081 [native]=18090)
servers=(native scorehost scorehost-blocking)
scenarios=("logreg-1:/v1/plugins/logreg/score" "gbdt-1:/v1/plugins/gbdt/score" "logreg-100:/v1/plugins/logreg/score")

to_us() { # wrk latency like 512.00us / 1.20ms / 2.00s -> microseconds
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v+0 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v*1000 } else { sub(/s$/, "", v); print v*1000000 } }'
}

results="$work/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
  for sc in "${scenarios[@]}"; do
    name=${sc%%:*}; path=${sc#*:}
    for s in "${servers[@]}"; do
      out=$(BODY_FILE="$work/$name.json" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency -s "$work/post.lua" "http://127.0.0.1:${port[$s]}$path")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(to_us "$(awk '$1=="50%" {print $2}' <<<"$out")")
      p99=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
      bad=$(awk '/Non-2xx/ {print $5}' <<<"$out"); bad=${bad:-0}
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$s" "$rps" "$p50" "$p99" "$bad" >>"$results"
      echo "round $round $name $s: $rps req/s p50 ${p50}us p99 ${p99}us non-2xx $bad" >&2
    done
  done
done

echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS round(s) interleaved; medians over rounds; ratios vs native"
python3 - "$results" <<'PY'
import sys, statistics, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for name, server, rps, p50, p99, bad in rows:
    by[(name, server)].append((float(rps), float(p50), float(p99), int(bad)))
def med(xs, i): return statistics.median(x[i] for x in xs)
print("| scenario | server | req/s | p50 µs | p99 µs | non-2xx | req/s ratio | p99 ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for name in dict.fromkeys(r[0] for r in rows):
    base = by[(name, "native")]
    for server in ["native", "scorehost", "scorehost-blocking"]:
        xs = by[(name, server)]
        print(f"| {name} | {server} | {med(xs,0):,.0f} | {med(xs,1):,.0f} | {med(xs,2):,.0f} | {sum(x[3] for x in xs)} "
              f"| {med(xs,0)/med(base,0):.2f}x | {med(xs,2)/med(base,2):.2f}x |")
PY
