#!/usr/bin/env bash
# The status page in a real browser: serves the bundled examples on loopback,
# sends them a bounded burst of traffic for a few seconds, opens / in headless
# Chromium (Debian's `chromium` package, installed here if missing) and checks
# the DOM it leaves: a row per serving plugin with its state, and both charts
# drawn with data (points, series and non-grid pixels, which the page's own
# script counts on the rendered canvases).
#
#   runtime/tests/status-page.sh        # .ci/run runs it after the tests
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorehost-target}"
PORT=${PORT:-18230}

if ! command -v chromium >/dev/null; then
  echo "installing chromium (Debian package)" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

cargo build --locked -p scorehost-cli --bin scorehost >&2
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$CARGO_TARGET_DIR/debug/scorehost" --cache-dir "$work/cache" serve --addr "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done

# Traffic for ~5 s: bounded in count and in time.
logreg='{"features": {"amount_usd_log": 6.0, "cross_border": true, "is_night": true}}'
event='{"event": {"amount": 120.5, "currency": "EUR", "timestamp": 1764165600}}'
end=$(( $(date +%s) + 5 ))
for _ in $(seq 1 2000); do
  [ "$(date +%s)" -lt "$end" ] || break
  curl -s -o /dev/null -H 'content-type: application/json' -d "$logreg" "http://127.0.0.1:$PORT/v1/plugins/logreg/score"
  curl -s -o /dev/null -H 'content-type: application/json' -d "$event" "http://127.0.0.1:$PORT/v1/plugins/txn-features/extract"
done

timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
  --virtual-time-budget=5000 --dump-dom "http://127.0.0.1:$PORT/" >"$work/dom.html" 2>"$work/chromium.log" || {
  echo "chromium failed:" >&2; tail -20 "$work/chromium.log" >&2; exit 1; }

python3 - "$work/dom.html" <<'PY'
import re, sys
from html.parser import HTMLParser

class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.canvases, self.rows = {}, {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "canvas":
            self.canvases[a.get("id")] = a
        if tag == "tr" and "data-plugin" in a:
            self.rows[a["data-plugin"]] = a.get("data-state")

dom = Dom()
dom.feed(open(sys.argv[1]).read())
failures = []
for name in ("txn-features", "logreg", "gbdt"):
    if dom.rows.get(name) != "live":
        failures.append(f"plugin row {name}: state {dom.rows.get(name)!r}, expected 'live'")
for chart in ("rate", "latency"):
    c = dom.canvases.get(chart, {})
    points, series, ink = (int(c.get(k, 0)) for k in ("data-points", "data-series", "data-ink"))
    print(f"chart {chart}: {points} points, {series} series drawn, {ink} inked pixels")
    if points < 2 or series < 2 or ink < 200:
        failures.append(f"chart {chart} is not drawn with data (points {points}, series {series}, ink {ink})")
print(f"plugins on the page: {dom.rows}")
if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("status page: PASS")
PY
