#!/usr/bin/env bash
# HTTP under load, side by side: scorehost vs the native in-process baseline vs
# `wasmtime serve`. One command; loopback only; bounded.
#
# Starts on 127.0.0.1:
#   native             native-baseline: the same logreg/gbdt code compiled for
#                      the host behind a minimal hyper server — no sandbox;
#   scorehost          `scorehost serve` (wasm calls as futures on the async
#                      workers, the default);
#   scorehost-blocking the same with `--call-mode blocking`;
#   wasmtime-serve     wasmtime-cli 48.0.8 (installed from crates.io into
#                      $TOOLS by this script) serving benches/wasi-http-logreg:
#                      logreg as a wasi:http component, the same arithmetic
#                      (plugins/logreg/src/model.rs) and model; as shipped, a
#                      new instance per request;
#   wasmtime-serve-reuse  the same with --max-instance-reuse-count 1000, the
#                      instance reuse scorehost does by default.
# Then for each scenario — single-row logreg, single-row gbdt, a batch of 100
# logreg rows — runs wrk (one thread, CONNECTIONS connections, DURATION
# seconds) against each server in turn, interleaved, ROUNDS times; prints the
# medians (req/s, p50, p99, ratios to native and to wasmtime serve), checks the
# targets of issue #15 and draws $PLOT (an SVG).
#
# wasmtime serve runs only the logreg-1 scenario (its component is logreg only).
# Run time ≈ (5 + 3 + 3) x ROUNDS x DURATION seconds, plus builds; the first
# run also builds wasmtime-cli (~10 min on 2 cores).
#
#   benches/load.sh                      # DURATION=10 CONNECTIONS=16 ROUNDS=3
#   DURATION=5 ROUNDS=1 benches/load.sh  # quick pass
#   WASMTIME_SERVE=0 benches/load.sh     # without the wasmtime serve servers
#                                        # (no wasmtime-cli build)
#   BEFORE_BIN=/tmp/old/scorehost BEFORE_PLUGINS=/tmp/old/plugins benches/load.sh
#                                        # also serves an earlier build as
#                                        # scorehost-before, interleaved: a change's
#                                        # before/after in one run. BEFORE_PLUGINS:
#                                        # logreg and gbdt as that build staged
#                                        # them (its `stage-plugins DIR logreg gbdt`)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
PLOT=${PLOT:-docs/load.svg}
TOOLS=${TOOLS:-$HOME/.cache/scorehost-tools}
WASMTIME_SERVE=${WASMTIME_SERVE:-1}
WASMTIME_VERSION=50.0.1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorehost-target}"

command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; apt-get install -y wrk >/dev/null; }
wasmtime="$TOOLS/bin/wasmtime"
if [ "$WASMTIME_SERVE" = 1 ] && ! "$wasmtime" --version 2>/dev/null | grep -q "^wasmtime $WASMTIME_VERSION\b"; then
  echo "installing wasmtime-cli $WASMTIME_VERSION into $TOOLS (serve only; once)" >&2
  cargo install wasmtime-cli --version "=$WASMTIME_VERSION" --locked --no-default-features \
    --features run,serve,cranelift,component-model,component-model-async,pooling-allocator,parallel-compilation \
    --root "$TOOLS" --target-dir "$TOOLS/target" >&2
fi
cargo build --release --locked -p scorehost-cli -p scorehost-benches --bin scorehost --bin native-baseline >&2
[ "$WASMTIME_SERVE" = 1 ] && cargo build --release --locked --target wasm32-wasip2 --manifest-path benches/wasi-http-logreg/Cargo.toml >&2
bin="$CARGO_TARGET_DIR/release"
component="$CARGO_TARGET_DIR/wasm32-wasip2/release/wasi_http_logreg.wasm"
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

declare -A port=([native]=18090 [scorehost]=18080 [scorehost-blocking]=18081 [scorehost-before]=18082
                 [wasmtime-serve]=18070 [wasmtime-serve-reuse]=18071)
start() { # name cmd...
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    if curl -s -o /dev/null -X POST "http://127.0.0.1:${port[$name]}/v1/plugins/logreg/score" -d '{}'; then return 0; fi
    sleep 0.2
  done
  echo "$name did not start; log:" >&2; cat "$work/$name.log" >&2; exit 1
}
start native "$bin/native-baseline" "127.0.0.1:${port[native]}"
start scorehost "$bin/scorehost" --cache-dir "$work/cache" serve --addr "127.0.0.1:${port[scorehost]}"
start scorehost-blocking "$bin/scorehost" --cache-dir "$work/cache" serve --addr "127.0.0.1:${port[scorehost-blocking]}" --call-mode blocking
before=""
if [ -n "${BEFORE_BIN:-}" ]; then
  before=scorehost-before
  start scorehost-before "$BEFORE_BIN" --cache-dir "$work/cache-before" serve \
    ${BEFORE_PLUGINS:+--plugins "$BEFORE_PLUGINS"} --addr "127.0.0.1:${port[scorehost-before]}"
fi
# The pooling allocator is wasmtime serve's fast path for an instance per
# request; it is given every advantage scorehost has.
wt_servers=""
if [ "$WASMTIME_SERVE" = 1 ]; then
  wt_servers="wasmtime-serve wasmtime-serve-reuse"
  start wasmtime-serve "$wasmtime" serve --addr "127.0.0.1:${port[wasmtime-serve]}" -O pooling-allocator=y -S cli=y "$component"
  start wasmtime-serve-reuse "$wasmtime" serve --addr "127.0.0.1:${port[wasmtime-serve-reuse]}" -O pooling-allocator=y -S cli=y \
    --max-instance-reuse-count 1000 "$component"
fi

# Same request, same answer: every server must score the payload alike before
# anything is timed.
for s in native scorehost $before $wt_servers; do
  answer=$(curl -sf -X POST -H 'content-type: application/json' --data-binary @"$work/logreg-1.json" \
    "http://127.0.0.1:${port[$s]}/v1/plugins/logreg/score") || { echo "$s did not answer 200" >&2; exit 1; }
  echo "$s: $answer" >&2
  python3 -c 'import json,sys; print(json.load(sys.stdin)["score"])' <<<"$answer" >>"$work/scores"
done
[ "$(sort -u "$work/scores" | wc -l)" = 1 ] || { echo "the servers disagree on the score" >&2; exit 1; }

to_us() { # wrk latency like 512.00us / 1.20ms / 2.00s -> microseconds
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v+0 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v*1000 } else { sub(/s$/, "", v); print v*1000000 } }'
}

scenarios=("logreg-1:/v1/plugins/logreg/score:native scorehost $before scorehost-blocking $wt_servers"
           "gbdt-1:/v1/plugins/gbdt/score:native scorehost $before scorehost-blocking"
           "logreg-100:/v1/plugins/logreg/score:native scorehost $before scorehost-blocking")
results="$work/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
  for sc in "${scenarios[@]}"; do
    IFS=: read -r name path servers <<<"$sc"
    for s in $servers; do
      out=$(BODY_FILE="$work/$name.json" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency -s "$work/post.lua" "http://127.0.0.1:${port[$s]}$path")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(to_us "$(awk '$1=="50%" {print $2}' <<<"$out")")
      p99=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
      bad=$(awk '/Non-2xx/ {print $5}' <<<"$out"); bad=${bad:-0}
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$s" "$rps" "$p50" "$p99" "$bad" >>"$results"
      echo "round $round $name $s: $rps req/s p50 ${p50}us p99 ${p99}us non-2xx $bad" >&2
    done
  done
done

echo
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS round(s) interleaved; medians over rounds"
python3 benches/load_report.py "$results" "$PLOT" "benches/load.sh: wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS interleaved round(s), loopback, $(nproc) cores"
