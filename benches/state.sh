#!/usr/bin/env bash
# What real-time state costs a request: the bundled `fraud` pipeline
# (txn-features + velocity + fraud-scorer) over HTTP on loopback, with its
# state on Redis, in process, and off (`--state off`: velocity runs and its
# exchange fails at once, so the pipeline does the same work but the store's).
#
#   1. The closed-loop maximum of `fraud` on Redis (hammer --rate 0).
#   2. ROUNDS rounds, each running the three servers in turn (order rotated)
#      open loop at FRACTION (0.7) of that maximum for DURATION s: p50 and p99.
#   3. Round trips: Redis's `INFO commandstats` before and after the Redis
#      runs: EVALSHA calls against the 2xx answers of those runs.
#
# Prints a row per run, then medians and p99(redis) − p99(off) (target:
# <= 1 ms). Every request is a new payment (hammer's {seq}/{pick:N}): new
# event ids, 5,000 cards, 3,000 e-mails, 200 IPs.
#
#   benches/state.sh                               # DURATION=10 ROUNDS=3
#   DURATION=3 ROUNDS=1 PROFILE=dev benches/state.sh   # quick pass (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-8}
FRACTION=${FRACTION:-0.7}
source benches/common.sh
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

rport=18390
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

# serve_state NAME PORT STATE: the bundled examples with --state STATE.
serve_state() {
  "$bin/scorehost" --cache-dir "$work/cache" serve --addr "127.0.0.1:$2" --state "$3" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$2/healthz" && return 0
    sleep 0.2
  done
  echo "$1 did not start; its log:" >&2; cat "$work/$1.log" >&2; exit 1
}
serve_state redis 18391 "redis://127.0.0.1:$rport/0"
serve_state memory 18392 memory
serve_state off 18393 off
declare -A port=([redis]=18391 [memory]=18392 [off]=18393)

now=$(date +%s)
cat >"$work/event.json" <<EOF
{"event": {"event_id": "b{seq}", "card": "card-{pick:5000}", "amount": 42.5, "currency": "EUR", "email": "u{pick:3000}@example.com", "ip": "10.0.{pick:200}.1", "timestamp": $now, "merchant_country": "DE", "card_country": "FR", "mcc": 5411}}
EOF
load() { # backend rate seconds -> hammer json
  "$bin/hammer" --addr "127.0.0.1:${port[$1]}" --duration "$3" --connections "$CONNECTIONS" --rate "$2" \
    --target "fraud,/v1/pipelines/fraud,$work/event.json,1"
}

for b in redis memory off; do load "$b" 0 2 >/dev/null; done # warm: instances, script loaded
max=$(load redis 0 "$DURATION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["targets"]["fraud"]["rps"])')
rate=$(python3 -c "print(round($FRACTION * $max))")
echo "closed-loop max of fraud on Redis: ${max%.*} req/s; open loop at $FRACTION of it: $rate req/s, ${DURATION}s per run" >&2

stats() { redis-cli -p "$rport" info commandstats | tr -d '\r' | grep -E '^cmdstat_(evalsha|script)' || true; }
results="$work/results.tsv"
: >"$results"
evalsha_before=$(stats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\).*/\1/p'); evalsha_before=${evalsha_before:-0}
order=(off memory redis)
redis_2xx=0
for round in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2; do
    b=${order[$(( (i + round) % 3 ))]}
    load "$b" "$rate" "$DURATION" >"$work/run.json"
    line=$(python3 - "$work/run.json" "$round" "$b" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["targets"]["fraud"]
ok = sum(n for k, n in t["outcomes"].items() if k.startswith("2"))
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{t['rps']:.0f}\t{t['p50_us']}\t{t['p99_us']}\t{ok}\t{t['requests'] - ok}\t{r['skipped']}")
PY
)
    echo "$line" | tee -a "$results" >&2
    [ "$b" = redis ] && redis_2xx=$(( redis_2xx + $(echo "$line" | cut -f6) ))
  done
done
evalsha_after=$(stats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\).*/\1/p')
# Every command Redis ran: EVALSHA, and inside it the script's own (one
# EVALSHA's share of each is its calls / the EVALSHA calls).
redis-cli -p "$rport" info commandstats | tr -d '\r' | grep '^cmdstat_' | sed 's/,rejected_calls.*//' >&2

python3 - "$results" "$max" "$rate" "$redis_2xx" "$evalsha_before" "$evalsha_after" "$FRACTION" <<'PY'
import statistics, sys
path, mx, rate, ok, before, after, fraction = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().split("\n") if l]
print(f"fraud pipeline, open loop at {rate} req/s ({float(fraction):.0%} of the Redis max {float(mx):.0f} req/s)")
print(f"{'state':<8} {'req/s':>7} {'p50 us':>8} {'p99 us':>8} {'non-2xx':>8}   (medians of {len(rows) // 3} runs)")
med = {}
for b in ["off", "memory", "redis"]:
    rs = [r for r in rows if r[1] == b]
    m = {k: statistics.median(float(r[i]) for r in rs) for k, i in [("rps", 2), ("p50", 3), ("p99", 4)]}
    bad = sum(int(r[6]) for r in rs)
    med[b] = m
    print(f"{b:<8} {m['rps']:>7.0f} {m['p50']:>8.0f} {m['p99']:>8.0f} {bad:>8}")
for b in ["memory", "redis"]:
    print(f"{b} - off: p50 {med[b]['p50'] - med['off']['p50']:+.0f} us, p99 {med[b]['p99'] - med['off']['p99']:+.0f} us")
calls = int(after) - int(before)
print(f"round trips: {calls} EVALSHA for {ok} answered requests on Redis ({calls / max(int(ok), 1):.3f} per request)")
PY
