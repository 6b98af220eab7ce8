#!/usr/bin/env python3
"""The correctness proof of real-time state (issue #19, docs/state.md).

Replays synthetic payment events through the bundled `fraud` pipeline
(txn-features + velocity + fraud-scorer) of a real `scorehost serve`, once per
state backend, and compares every aggregate velocity returns with an exact
offline recomputation under the documented window semantics (wit/state.wit):
a window of length W at event time t is the union of tiles floor(t/T)-n ..
floor(t/T) of level T (10m: 1-minute tiles; 1h: 5-minute tiles; 24h: hourly).

Events: cards drawn Zipf(1.1) from 5,000, e-mails from 3,000 (each with a few
cards), IPs from 2,000; times over the last 20 h; 5 % out of order by up to
10 min (crossing tiles); 3 % retries of an earlier event with the same event
id; 0.5 % late (30-40 h old) or future (1-2 h ahead). Requests are sent on one
HTTP/1.1 connection, pipelined, so the server processes them in send order.

Counts, sums, lookups and statuses must match exactly; distinct counts (HyperLogLog)
within max(1, 3 x 0.81 % x exact); with both backends, their distinct counts
must also be equal event by event (the in-process store clones Redis's HLL).

Run: benches/state_replay.py --binary target/release/scorehost [--events N]
     [--backends memory,redis]   (exit status 1 on any mismatch)
"""

import argparse
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

MINUTE = 60_000
HOUR = 60 * MINUTE
# (feature suffix, tile ms, tiles back): the velocity plugin's windows.
CARD_WINDOWS = [("10m", MINUTE, 10), ("1h", 5 * MINUTE, 12), ("24h", HOUR, 24)]
EMAIL_WINDOW = (HOUR, 24)
IP_WINDOW = (5 * MINUTE, 12)
MAX_LATE = 24 * HOUR
MAX_FUTURE = 5 * MINUTE
RATES = {"USD": 1.0, "EUR": 1.08}
HLL_ERROR = 0.0081


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zipf_sampler(rng, n, s):
    weights = [1.0 / (k ** s) for k in range(1, n + 1)]
    total = sum(weights)
    cum, acc = [], 0.0
    for w in weights:
        acc += w / total
        cum.append(acc)

    def draw():
        import bisect
        return min(bisect.bisect_left(cum, rng.random()), n - 1)

    return draw


def generate(n, seed, now_ms):
    """The events, in send order (retries included)."""
    rng = random.Random(seed)
    card = zipf_sampler(rng, 5000, 1.1)
    email_cards = {}
    events = []
    base = now_ms - 20 * HOUR
    for i in range(n):
        if events and rng.random() < 0.03:
            # A retry of a recent event: the same payload, the same event id.
            events.append(dict(events[-rng.randint(1, min(50, len(events)))]))
            continue
        c = f"card-{card()}"
        e = rng.randrange(3000)
        if rng.random() < 0.01:
            # A card-testing ring: one e-mail, a new card every time.
            e, c = "ring", f"ring-card-{i}"
        email_cards.setdefault(e, [])
        if e == "ring" or len(email_cards[e]) < 1 + e % 4 or rng.random() < 0.05:
            email_cards[e].append(c)
        c_for_email = c if e == "ring" else rng.choice(email_cards[e])
        t = base + int(i * (20 * HOUR - 2 * MINUTE) / n)
        r = rng.random()
        if r < 0.05:
            t -= rng.randint(1, 10 * MINUTE)  # out of order, across tiles
        elif r < 0.0525:
            t = now_ms - 30 * HOUR - rng.randint(0, 10 * HOUR)  # late
        elif r < 0.055:
            t = now_ms + HOUR + rng.randint(0, HOUR)  # future
        currency = "EUR" if rng.random() < 0.3 else "USD"
        amount = rng.randint(100, 500_000) / 100
        event = {
            "event_id": f"evt-{i}",
            "card": c_for_email,
            "amount": amount,
            "currency": currency,
            "email": f"user{e}@example.com",
            "ip": f"10.{rng.randrange(2000) // 250}.{rng.randrange(2000) % 250}.7",
            "timestamp_ms": t,
            "timestamp": t // 1000,
        }
        if rng.random() < 0.2:
            del event["email"]
        events.append(event)
    return events


def cents(event):
    # velocity: (amount * rate * 100).round(), Rust's round half away from zero.
    v = event["amount"] * RATES[event["currency"]] * 100.0
    return int(math.floor(v + 0.5))


class Oracle:
    """Every accepted observation, by entity and tile, recomputed exactly."""

    def __init__(self):
        self.seen = set()
        self.card = {}  # (card, tile_ms, k) -> [count, sum]
        self.ip = {}  # (ip, k) -> count
        self.email = {}  # (email, k) -> set(cards)

    def expect(self, e, now_ms):
        t = e["timestamp_ms"]
        if t < now_ms - MAX_LATE:
            return {"state_status": "late"}
        if t > now_ms + MAX_FUTURE:
            return {"state_status": "future"}
        fresh = e["event_id"] not in self.seen
        if fresh:
            self.seen.add(e["event_id"])
            for tile in sorted({tile for _, tile, _ in CARD_WINDOWS}):
                cell = self.card.setdefault((e["card"], tile, t // tile), [0, 0])
                cell[0] += 1
                cell[1] += cents(e)
            if "email" in e:
                self.email.setdefault((e["email"], t // HOUR), set()).add(e["card"])
            ip_tile = t // IP_WINDOW[0]
            self.ip[(e["ip"], ip_tile)] = self.ip.get((e["ip"], ip_tile), 0) + 1
        out = {"state_status": "recorded" if fresh else "duplicate"}
        for name, tile, n in CARD_WINDOWS:
            k = t // tile
            c = s = 0
            for j in range(k - n, k + 1):
                cell = self.card.get((e["card"], tile, j))
                if cell:
                    c += cell[0]
                    s += cell[1]
            out[f"card_count_{name}"] = c
            out[f"card_amount_cents_{name}"] = s
        if "email" in e:
            k = t // HOUR
            cards = set()
            for j in range(k - EMAIL_WINDOW[1], k + 1):
                cards |= self.email.get((e["email"], j), set())
            out["email_distinct_cards_24h"] = len(cards)
        k = t // IP_WINDOW[0]
        out["ip_count_1h"] = sum(self.ip.get((e["ip"], j), 0) for j in range(k - IP_WINDOW[1], k + 1))
        return out


def start_redis(tmp):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not answer within 20 s")


def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        a = str(a)
        out += f"${len(a.encode())}\r\n{a}\r\n"
    return out.encode()


def redis_hset_all(port, rows):
    with socket.create_connection(("127.0.0.1", port)) as s:
        for table, entity, fields in rows:
            args = ["HSET", f"sh:l:{table}:{entity}"]
            for k, v in fields.items():
                args += [k, v]
            s.sendall(resp(*args))
        s.sendall(resp("PING"))
        buf = b""
        while not buf.endswith(b"+PONG\r\n"):
            buf += s.recv(65536)


def commandstats(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(resp("INFO", "commandstats"))
        time.sleep(0.2)
        text = s.recv(1 << 20).decode()
    stats = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            stats[name] = dict(kv.split("=") for kv in rest.split(","))
    return stats


def start_serve(binary, state, lookups_file):
    port = free_port()
    # The replay checks semantics, not latency: the store may take up to the
    # call's deadline (velocity's 50 ms, less a margin) rather than the 10 ms
    # default, so a slow moment of a busy CI machine (a debug binary) is not
    # a `timeout` counted as a mismatch.
    args = [binary, "serve", "--addr", f"127.0.0.1:{port}", "--state", state, "--state-timeout-ms", "1000"]
    if lookups_file:
        args += ["--state-lookups", lookups_file]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    for line in proc.stderr:
        if "on http://" in line:
            break
        if time.time() > deadline:
            break
    else:
        sys.exit(f"scorehost serve exited: {proc.wait()}")
    # Keep draining stderr so the server never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, port


def replay(port, events, window=64):
    """Sends `events` pipelined on one connection; their `features`, in order."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    results, sent = [], 0

    def send(e):
        body = json.dumps({"event": e, "return_features": True}).encode()
        head = (f"POST /v1/pipelines/fraud HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body)

    def receive():
        status = int(reader.readline().split()[1])
        length = 0
        while True:
            line = reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        body = json.loads(reader.read(length))
        if status != 200:
            sys.exit(f"event {len(results)} answered {status}: {body}")
        results.append(body["features"])

    while sent < len(events) or len(results) < len(events):
        while sent < len(events) and sent - len(results) < window:
            send(events[sent])
            sent += 1
        receive()
    sock.close()
    return results


def check(events, results, start_ms):
    oracle = Oracle()
    mismatches, errors, statuses = [], [], {}
    for i, (e, got) in enumerate(zip(events, results)):
        # The server's clock at processing lies between the run's start and now:
        # generated times keep hours away from the late and future edges.
        want = oracle.expect(e, start_ms)
        statuses[want["state_status"]] = statuses.get(want["state_status"], 0) + 1
        for k, w in want.items():
            if k.startswith("card_amount_cents_"):
                g = got.get("card_amount_usd_" + k[len("card_amount_cents_"):])
                g = None if g is None else int(round(g * 100))
            else:
                g = got.get(k)
            if k == "email_distinct_cards_24h":
                err = abs((g or 0) - w)
                errors.append(err / max(w, 1))
                if err > max(1, 3 * HLL_ERROR * w):
                    mismatches.append((i, k, g, w))
            elif g != w:
                mismatches.append((i, k, g, w))
        if want["state_status"] in ("late", "future") and got.get("state_ok") is not False:
            mismatches.append((i, "state_ok", got.get("state_ok"), False))
    return mismatches, errors, statuses


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--backends", default="memory,redis")
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args()
    now_ms = int(time.time() * 1000)
    events = generate(args.events, args.seed, now_ms)
    cards = sorted({e["card"] for e in events})
    rng = random.Random(args.seed)
    lookups = [("card_stats", c, {"chargeback_rate": f"{rng.random() / 10:.4f}"}) for c in cards if rng.random() < 0.1]
    rates = {c: float(f["chargeback_rate"]) for _, c, f in lookups}
    distinct_by_backend = {}
    failed = False
    for backend in args.backends.split(","):
        tmp = tempfile.mkdtemp(prefix="state-replay-")
        redis = None
        lookups_file = None
        if backend == "redis":
            if not shutil.which("redis-server"):
                sys.exit("redis-server is not installed (apt-get install redis-server)")
            redis, rport = start_redis(tmp)
            redis_hset_all(rport, lookups)
            state = f"redis://127.0.0.1:{rport}/0"
        else:
            lookups_file = os.path.join(tmp, "lookups.jsonl")
            with open(lookups_file, "w") as f:
                for t, c, fields in lookups:
                    f.write(json.dumps({"table": t, "entity": c, "fields": fields}) + "\n")
            state = "memory"
        server, port = start_serve(args.binary, state, lookups_file)
        try:
            before = commandstats(rport) if redis else None
            start_ms = int(time.time() * 1000)
            started = time.time()
            results = replay(port, events)
            took = time.time() - started
            after = commandstats(rport) if redis else None
        finally:
            server.terminate()
            server.wait()
            if redis:
                redis.terminate()
                redis.wait()
            shutil.rmtree(tmp, ignore_errors=True)
        mismatches, errors, statuses = check(events, results, start_ms)
        for e, got in zip(events, results):
            want_rate = rates.get(e["card"])
            accepted = got.get("state_ok") is True
            if accepted and got.get("card_chargeback_rate") != want_rate:
                mismatches.append((e["event_id"], "card_chargeback_rate", got.get("card_chargeback_rate"), want_rate))
        distinct_by_backend[backend] = [r.get("email_distinct_cards_24h") for r in results]
        summary = {
            "backend": backend,
            "events": len(events),
            "seconds": round(took, 1),
            "statuses": statuses,
            "mismatches": len(mismatches),
            "distinct_max_rel_error": round(max(errors, default=0), 4),
            "distinct_mean_rel_error": round(sum(errors) / max(len(errors), 1), 5),
        }
        if redis:
            calls = lambda s, c: int(s.get(c, {}).get("calls", 0))
            evalsha = calls(after, "evalsha") - calls(before, "evalsha")
            failed_evalsha = int(after.get("evalsha", {}).get("failed_calls", 0)) - int(
                (before.get("evalsha") or {}).get("failed_calls", 0))
            others = {c: calls(after, c) - calls(before, c) for c in after if c not in ("evalsha", "info")}
            summary["evalsha"] = evalsha
            summary["evalsha_noscript"] = failed_evalsha
            # commandstats counts the commands the script ran too (HINCRBY, PFCOUNT, …):
            # none of them was sent by scorehost on its own.
            summary["commands_run_by_the_script"] = {k: v for k, v in others.items() if v}
        print(json.dumps(summary))
        for m in mismatches[:10]:
            print("  mismatch: event", m[0], m[1], "got", m[2], "want", m[3])
        failed |= bool(mismatches)
    if len(distinct_by_backend) == 2:
        a, b = distinct_by_backend.values()
        differ = sum(1 for x, y in zip(a, b) if x != y)
        print(json.dumps({"distinct_equal_across_backends": differ == 0, "events_differing": differ}))
        failed |= differ > 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
