#!/usr/bin/env bash
# What `[instances] fresh_per_call = true` costs a served single-row request.
# One command; loopback only; bounded.
#
# Starts two `scorehost serve` on 127.0.0.1, each serving logreg only: `warm`
# as bundled (instances reused, the default) and `fresh` with
# fresh_per_call = true (a never-used instance for every call). Per round,
# interleaved, both servers get:
#   - open loop at RATE req/s for DURATION s (hammer, CONNECTIONS
#     connections): latency at a load the machine has headroom for — what a
#     caller sees;
#   - closed loop for DURATION s (hammer --rate 0): the throughput when the
#     CPU is the limit.
# Prints per round and the medians: p50/p99 of each, the p50 overhead of fresh
# as a share of warm's p50, and the closed-loop throughput ratio.
#
#   benches/fresh.sh                                   # RATE=10000 DURATION=10 ROUNDS=3
#   RATE=5000 DURATION=5 ROUNDS=1 benches/fresh.sh     # quick pass
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-10000}
CONNECTIONS=${CONNECTIONS:-16}
source benches/common.sh

"$bin/stage-plugins" "$work/warm" logreg >/dev/null
"$bin/stage-plugins" "$work/fresh" --fresh logreg >/dev/null
echo '{"features": {"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true, "email_domain_disposable": false, "email_local_digits": 3, "is_night": true, "mcc_high_risk": false, "ip_private": false}}' >"$work/logreg.json"

declare -A port=([warm]=18281 [fresh]=18282)
for s in warm fresh; do
  serve "$s" "${port[$s]}" "$work/$s"
  # Warm up: caches, pool slots, warm instances.
  "$bin/hammer" --addr "127.0.0.1:${port[$s]}" --duration 2 --connections 4 --rate 0 \
    --target "logreg,/v1/plugins/logreg/score,$work/logreg.json,1" >/dev/null
done

run() { # server rate -> one TSV line: rps p50 p99 non-200
  "$bin/hammer" --addr "127.0.0.1:${port[$1]}" --duration "$DURATION" --connections "$CONNECTIONS" --rate "$2" \
    --target "logreg,/v1/plugins/logreg/score,$work/logreg.json,1" |
    python3 -c 'import json,sys; t=json.load(sys.stdin)["targets"]["logreg"]; bad=sum(n for k,n in t["outcomes"].items() if k!="200"); print("%.0f\t%s\t%s\t%d" % (t["rps"], t["p50_us"], t["p99_us"], bad))'
}

results="$work/results.tsv"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
  for load in open closed; do
    rate=$RATE; [ "$load" = closed ] && rate=0
    for s in warm fresh; do
      printf '%s\t%s\t%s\t%s\n' "$round" "$load" "$s" "$(run "$s" "$rate")" >>"$results"
      tail -1 "$results" >&2
    done
  done
done

python3 - "$results" "$RATE" "$DURATION" "$CONNECTIONS" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
rate, dur, conns, rounds = sys.argv[2:6]
def med(load, server, col):
    return statistics.median(float(r[col]) for r in rows if r[1] == load and r[2] == server)
print(f"\nlogreg single-row score over HTTP/1.1, {conns} connections, {dur} s per run, {rounds} interleaved round(s); medians")
print(f"{'load':<26} {'server':<6} {'req/s':>8} {'p50 us':>8} {'p99 us':>8} {'non-200':>8}")
for load, what in [("open", f"open loop, {rate} req/s"), ("closed", "closed loop (CPU-bound)")]:
    for s in ["warm", "fresh"]:
        bad = sum(int(r[6]) for r in rows if r[1] == load and r[2] == s)
        print(f"{what:<26} {s:<6} {med(load, s, 3):>8.0f} {med(load, s, 4):>8.0f} {med(load, s, 5):>8.0f} {bad:>8}")
per_round = lambda load, col: [float(f[col]) / float(w[col]) for w, f in zip(
    [r for r in rows if r[1] == load and r[2] == "warm"], [r for r in rows if r[1] == load and r[2] == "fresh"])]
p50 = per_round("open", 4)
thr = per_round("closed", 3)
print(f"\nfresh p50 overhead at {rate} req/s: {statistics.median(p50) - 1:+.1%} of warm's p50 (rounds: {', '.join(f'{x - 1:+.1%}' for x in p50)})")
print(f"fresh throughput when CPU-bound: {statistics.median(thr):.2f}x warm (rounds: {', '.join(f'{x:.2f}' for x in thr)})")
PY
