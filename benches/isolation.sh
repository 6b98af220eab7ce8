#!/usr/bin/env bash
# Fault isolation: does a healthy plugin keep its throughput while hostile
# plugins on the same host are hammered?
#
# Serves, on loopback, logreg plus every hostile plugin (an infinite loop
# stopped by fuel, one stopped by its 50 ms deadline on every call, a memory
# bomb, unbounded recursion, a panic, unusable output, and host-call abuse:
# random bytes and 1 MiB log lines until the deadline) twice: once as
# shipped (circuit breakers armed) and once with every breaker disarmed — the
# control that shows what the breaker is worth. Then, interleaved, ROUNDS times:
#
#   solo      logreg alone, closed loop (hammer --rate 0, CONNECTIONS connections)
#   hostile   the same logreg load while a second hammer sends HOSTILE_RATE
#             req/s, open loop, spread over the hostile plugins
#   no-breaker   the same, against the server whose breakers are disarmed
#
# and prints logreg's req/s and p99 per run with the ratio to solo (target:
# >= 0.9x with breakers armed). Unprotected, the hostile load asks for far more
# CPU than the machine has (the deadline plugin alone: HOSTILE_RATE/6 calls/s x
# 50 ms); the breakers quarantine each hostile plugin after its first faults,
# so what is left of it is a cheap 503 per request and one probe per back-off.
#
# Bounded: every run lasts DURATION seconds; total about 3 x ROUNDS x DURATION.
#
#   benches/isolation.sh                          # DURATION=10 ROUNDS=3
#   DURATION=5 ROUNDS=1 benches/isolation.sh      # quick pass
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
HOSTILE_RATE=${HOSTILE_RATE:-1200}
source benches/common.sh

hostile=(hostile-loop hostile-deadline hostile-alloc hostile-recursion hostile-panic hostile-output hostile-host)
"$bin/stage-plugins" "$work/armed" logreg "${hostile[@]}" >/dev/null
"$bin/stage-plugins" "$work/disarmed" --no-breaker logreg "${hostile[@]}" >/dev/null
echo '{"features": {"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true, "email_domain_disposable": false, "email_local_digits": 3, "is_night": true, "mcc_high_risk": false, "ip_private": false}}' >"$work/logreg.json"
echo '{"features": {}}' >"$work/empty.json"
echo '{"features": {"mode": "huge"}}' >"$work/huge.json"
echo '{"features": {"mode": "nan"}}' >"$work/nan.json"
echo '{"features": {"mode": "random-loop"}}' >"$work/random.json"
echo '{"features": {"mode": "log-loop"}}' >"$work/log.json"

serve armed 18181 "$work/armed"
serve disarmed 18182 "$work/disarmed"

healthy() { # port -> json
  "$bin/hammer" --addr "127.0.0.1:$1" --duration "$DURATION" --connections "$CONNECTIONS" --rate 0 \
    --target "logreg,/v1/plugins/logreg/score,$work/logreg.json,1"
}
hammer_hostile() { # port seconds -> json
  local t=()
  if [ "${CONTROL:-}" = 404 ]; then # the same request rate, to a plugin that does not exist
    t+=(--target "absent,/v1/plugins/absent/score,$work/empty.json,1")
    "$bin/hammer" --addr "127.0.0.1:$1" --duration "$2" --connections 32 --rate "$HOSTILE_RATE" "${t[@]}"
    return
  fi
  for p in hostile-loop hostile-deadline hostile-alloc hostile-recursion hostile-panic; do
    t+=(--target "$p,/v1/plugins/$p/score,$work/empty.json,2")
  done
  t+=(--target "output-huge,/v1/plugins/hostile-output/score,$work/huge.json,1")
  t+=(--target "output-nan,/v1/plugins/hostile-output/score,$work/nan.json,1")
  # Host-call abuse: random bytes and 1 MiB log lines until the deadline.
  t+=(--target "host-random,/v1/plugins/hostile-host/score,$work/random.json,1")
  t+=(--target "host-log,/v1/plugins/hostile-host/score,$work/log.json,1")
  "$bin/hammer" --addr "127.0.0.1:$1" --duration "$2" --connections 32 --rate "$HOSTILE_RATE" "${t[@]}"
}

# Warm both servers (instances, caches) before measuring.
for port in 18181 18182; do
  "$bin/hammer" --addr "127.0.0.1:$port" --duration 2 --connections 4 --rate 0 \
    --target "logreg,/v1/plugins/logreg/score,$work/logreg.json,1" >/dev/null
done

results="$work/results.tsv"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
  healthy 18181 >"$work/solo.json"
  for mode in hostile no-breaker; do
    port=18181; [ "$mode" = no-breaker ] && port=18182
    hammer_hostile "$port" $((DURATION + 2)) >"$work/$mode-hostile.json" &
    hp=$!
    sleep 1
    healthy "$port" >"$work/$mode.json"
    wait "$hp"
  done
  python3 - "$work" "$round" >>"$results" <<'PY'
import json, sys
work, rnd = sys.argv[1], sys.argv[2]
solo = json.load(open(f"{work}/solo.json"))["targets"]["logreg"]
print(f"{rnd}\tsolo\t{solo['rps']:.0f}\t{solo['p99_us']}\t1.00\t-")
for mode in ["hostile", "no-breaker"]:
    h = json.load(open(f"{work}/{mode}.json"))["targets"]["logreg"]
    hostile = json.load(open(f"{work}/{mode}-hostile.json"))
    sent = sum(t["requests"] for t in hostile["targets"].values())
    kinds = {}
    for t in hostile["targets"].values():
        for k, n in t["outcomes"].items():
            kinds[k] = kinds.get(k, 0) + n
    top = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:4])
    bad = {k: n for k, n in h["outcomes"].items() if k != "200"}
    print(f"{rnd}\t{mode}\t{h['rps']:.0f}\t{h['p99_us']}\t{h['rps'] / solo['rps']:.2f}\t"
          f"{sent} hostile answered ({hostile['skipped']} skipped); {top}; logreg non-200: {bad or 0}")
PY
  tail -3 "$results" >&2
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$work"/*.json "$KEEP/" # raw hammer output, per run
done

python3 - "$results" "$DURATION" "$CONNECTIONS" "$HOSTILE_RATE" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
dur, conns, rate = sys.argv[2:5]
print(f"\nlogreg single-row score, closed loop, {conns} connections, {dur} s per run; "
      f"hostile load {rate} req/s open loop over 6 hostile plugins")
print(f"{'run':<11} {'req/s (median)':>15} {'p99 us (median)':>16} {'ratio to solo':>14}")
solo = statistics.median(float(r[2]) for r in rows if r[1] == "solo")
for mode in ["solo", "hostile", "no-breaker"]:
    rs = [r for r in rows if r[1] == mode]
    rps = statistics.median(float(r[2]) for r in rs)
    p99 = statistics.median(float(r[3]) for r in rs)
    label = {"solo": "solo", "hostile": "hostile", "no-breaker": "no breaker"}[mode]
    print(f"{label:<11} {rps:>15.0f} {p99:>16.0f} {rps / solo:>13.2f}x")
PY
