#!/usr/bin/env bash
# Single-row HTTP scoring of the same logistic regression three ways, on
# loopback: scorehost serving plugins/logreg (Rust), scorehost serving
# plugins/logreg-py (Python, the same answers bit for bit), and FastAPI under
# uvicorn serving logreg-py's own class natively (benches/python_fastapi.py) —
# what a data scientist would deploy instead. Each closed loop (hammer --rate
# 0, CONNECTIONS connections) for DURATION seconds, ROUNDS rounds in rotated
# order; prints req/s, p50 and p99 per run, the medians, and the ratios.
#
# FastAPI and uvicorn are pip-installed (pinned below) into a venv under
# ~/.cache/scorehost-tools on the first run; uvicorn runs UVICORN_WORKERS
# workers (default 2: one per core, as one would deploy it here).
#
#   benches/python.sh                                   # DURATION=10 ROUNDS=3
#   DURATION=3 ROUNDS=1 PROFILE=dev benches/python.sh   # quick pass
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-8}
UVICORN_WORKERS=${UVICORN_WORKERS:-2}
FASTAPI_VERSION=0.165.0
UVICORN_VERSION=0.55.0
source benches/common.sh

venv="$HOME/.cache/scorehost-tools/fastapi-$FASTAPI_VERSION-uvicorn-$UVICORN_VERSION"
if [ ! -x "$venv/bin/uvicorn" ]; then
  echo "installing fastapi $FASTAPI_VERSION and uvicorn $UVICORN_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "fastapi==$FASTAPI_VERSION" "uvicorn==$UVICORN_VERSION"
fi

"$bin/stage-plugins" "$work/plugins" logreg logreg-py >/dev/null
serve scorehost 18701 "$work/plugins"
(cd benches && exec "$venv/bin/uvicorn" python_fastapi:api --host 127.0.0.1 --port 18702 \
  --workers "$UVICORN_WORKERS" --log-level warning >"$work/fastapi.log" 2>&1) &
pids+=($!) # exec: the pid is uvicorn's own, so cleanup stops it
for _ in $(seq 1 300); do
  curl -s -o /dev/null -X POST -H 'content-type: application/json' -d '{"features": {}}' \
    http://127.0.0.1:18702/score && break
  sleep 0.2
done

cat >"$work/body.json" <<'JSON'
{"features": {"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true, "email_domain_disposable": false, "email_local_digits": 3, "is_night": true, "mcc_high_risk": false, "ip_private": false}}
JSON
declare -A target=(
  [rust]="scorehost,/v1/plugins/logreg/score"
  [python]="scorehost,/v1/plugins/logreg-py/score"
  [fastapi]="fastapi,/score"
)
declare -A port=([scorehost]=18701 [fastapi]=18702)
# Every one answers the same score before anything is timed.
for k in rust python fastapi; do
  IFS=, read -r server path <<<"${target[$k]}"
  curl -s -X POST -H 'content-type: application/json' --data @"$work/body.json" \
    "http://127.0.0.1:${port[$server]}$path" | python3 -c "import json,sys; print('$k', json.load(sys.stdin)['score'])" >&2
done
load() { # name seconds -> hammer json
  IFS=, read -r server path <<<"${target[$1]}"
  "$bin/hammer" --addr "127.0.0.1:${port[$server]}" --duration "$2" --connections "$CONNECTIONS" --rate 0 \
    --target "$1,$path,$work/body.json,1"
}
for k in rust python fastapi; do load "$k" 2 >/dev/null; done # warm

results="$work/results.tsv"
: >"$results"
order=(rust python fastapi)
for round in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2; do
    k=${order[$(( (i + round) % 3 ))]}
    load "$k" "$DURATION" >"$work/run.json"
    python3 - "$work/run.json" "$round" "$k" <<'PY' | tee -a "$results" >&2
import json, sys
r = json.load(open(sys.argv[1]))
t = r["targets"][sys.argv[3]]
ok = sum(n for k, n in t["outcomes"].items() if k.startswith("2"))
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{t['rps']:.0f}\t{t['p50_us']}\t{t['p99_us']}\t{t['requests'] - ok}")
PY
  done
done

python3 - "$results" "$CONNECTIONS" "$UVICORN_WORKERS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
print(f"single-row logreg over HTTP, closed loop, {sys.argv[2]} connections (uvicorn: {sys.argv[3]} workers)")
print(f"{'server':<28} {'req/s':>8} {'p50 us':>8} {'p99 us':>8} {'non-2xx':>8}   (medians of {len(rows) // 3} runs)")
names = {"rust": "scorehost, Rust plugin", "python": "scorehost, Python plugin", "fastapi": "FastAPI + uvicorn (native)"}
med = {}
for k in ["rust", "python", "fastapi"]:
    rs = [r for r in rows if r[1] == k]
    m = {f: statistics.median(float(r[i]) for r in rs) for f, i in [("rps", 2), ("p50", 3), ("p99", 4)]}
    med[k] = m
    print(f"{names[k]:<28} {m['rps']:>8.0f} {m['p50']:>8.0f} {m['p99']:>8.0f} {sum(int(r[5]) for r in rs):>8}")
print(f"python / rust: {med['python']['rps'] / med['rust']['rps']:.2f}x req/s, p99 {med['python']['p99'] / med['rust']['p99']:.2f}x")
print(f"python / fastapi: {med['python']['rps'] / med['fastapi']['rps']:.2f}x req/s, p99 {med['python']['p99'] / med['fastapi']['p99']:.2f}x")
PY
