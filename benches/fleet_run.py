"""The scenarios of benches/fleet.sh (run it, not this): starts etcd, the
registry, three fleet replicas and haproxy on free loopback ports, runs
bounded load through haproxy with hammer while rolling out, restarting and
cutting servers off, then measures fleet mode's cost on the request path.

argv: BIN_DIR WORK_DIR ROUNDS ALTERNATE RATIO_SECONDS. Prints a JSON summary
and exits 1 if any check failed. Every process is stopped by PID at exit.
"""

import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

BIN, WORK = sys.argv[1], sys.argv[2]
ROUNDS, ALTERNATE, RATIO_SECONDS = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
PREFIX = "/bench/"
procs = []
failures = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"), **kw)
    procs.append(p)
    return p


def stop(p, timeout=10):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def http(method, url, body=None, token=None, timeout=5):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, None


def wait_for(what, check, seconds=60, every=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    failures.append(f"timed out waiting for {what}")
    raise SystemExit(report())


# --- etcd and the registry ---------------------------------------------------
etcd_port, etcd_peer = free_port(), free_port()
ETCD = f"127.0.0.1:{etcd_port}"


def start_etcd():
    c, p = f"http://{ETCD}", f"http://127.0.0.1:{etcd_peer}"
    proc = start(["etcd", "--name", "n1", "--data-dir", f"{WORK}/etcd",
                  "--listen-client-urls", c, "--advertise-client-urls", c,
                  "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
                  "--initial-cluster", f"n1={p}", "--initial-cluster-state", "new",
                  "--logger", "zap", "--log-level", "error"], f"{WORK}/etcd.log")
    wait_for("etcd", lambda: http("GET", f"{c}/health")[0] == 200)
    return proc


REGISTRY = f"127.0.0.1:{free_port()}"
with open(f"{WORK}/registry.yml", "w") as f:
    f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {WORK}/registry\n"
            f"http:\n  addr: {REGISTRY}\n")
etcd = start_etcd()
registry = start(["docker-registry", "serve", f"{WORK}/registry.yml"], f"{WORK}/registry.log")
wait_for("the registry", lambda: http("GET", f"http://{REGISTRY}/v2/")[0] == 200)


# --- versions ----------------------------------------------------------------
def variant(version, shift):
    d = f"{WORK}/v-{version}"
    shutil.copytree(f"{WORK}/plugins/logreg", d)
    m = open(f"{d}/plugin.toml").read().replace('version = "0.1.0"', f'version = "{version}"')
    open(f"{d}/plugin.toml", "w").write(m)
    w = json.load(open(f"{d}/model/weights.json"))
    w["intercept"] += shift
    json.dump(w, open(f"{d}/model/weights.json", "w"))
    z = w["intercept"] + w["weights"]["amount_usd_log"] * 2.0
    v = {"name": "shifted", "input": {"amount_usd_log": 2.0}, "score": 1 / (1 + math.exp(-z)), "tolerance": 1e-9}
    open(f"{d}/tests.jsonl", "w").write(json.dumps(v) + "\n")
    return d


def push(d, tag):
    out = subprocess.run([f"{BIN}/scorehost", "--cache-dir", f"{WORK}/push-cache", "push", d,
                          f"{REGISTRY}/scorehost/logreg:{tag}", "--plain-http"], capture_output=True, check=True)
    return json.loads(out.stdout)["digest"]


V1, V2, V3 = "0.1.0", "0.1.0+model.2", "0.1.0+model.3"
d1 = push(f"{WORK}/plugins/logreg", "v1")
d2 = push(variant(V2, 1.0), "v2")
d3 = push(variant(V3, 2.0), "v3")
REPO = f"{REGISTRY}/scorehost/logreg"


def fleet(*args):
    out = subprocess.run([f"{BIN}/scorehost", "fleet", "--etcd", ETCD, "--prefix", PREFIX, *args],
                         capture_output=True, text=True)
    try:
        body = json.loads(out.stdout)
    except json.JSONDecodeError:
        body = None
    return out.returncode, body, out.stderr


# --- replicas and haproxy ----------------------------------------------------
TOKEN = "0123456789abcdef0123456789abcdef"
with open(f"{WORK}/token", "w") as f:
    f.write(TOKEN)
os.chmod(f"{WORK}/token", 0o600)


class Replica:
    def __init__(self, name, extra=()):
        self.name, self.port, self.extra, self.proc = name, free_port(), list(extra), None
        self.addr = f"127.0.0.1:{self.port}"
        self.start()

    def start(self):
        self.proc = start([f"{BIN}/scorehost", "--cache-dir", f"{WORK}/cache-{self.name}", "serve",
                           "--store", f"{WORK}/store-{self.name}", "--admin-token-file", f"{WORK}/token",
                           "--addr", self.addr, "--fleet-etcd", ETCD, "--fleet-prefix", PREFIX,
                           "--fleet-plain-http", "--fleet-startup-timeout-secs", "2", "--drain-delay-ms", "1500",
                           "--replica-id", self.name,
                           *self.extra], f"{WORK}/{self.name}.log")

    def ready(self):
        return http("GET", f"http://{self.addr}/readyz")[0] == 200

    def live(self):
        code, body = http("GET", f"http://{self.addr}/v1/plugins/logreg")
        return body.get("version") if code == 200 and isinstance(body, dict) else None


replicas = [Replica(f"r{i}") for i in (1, 2, 3)]
wait_for("the replicas listening", lambda: all(http("GET", f"http://{r.addr}/healthz")[0] == 200 for r in replicas))


def status():
    return fleet("status")[1] or {}


def loaded_everywhere(digest, n=3):
    rs = status().get("replicas", [])
    return len(rs) == n and all(digest in r["plugins"].get("logreg", {}).get("loaded", []) for r in rs)


def converged():
    return status().get("plugins", {}).get("logreg", {}).get("converged") is True


def check(code, err, what):
    if code != 0:
        failures.append(f"{what}: exit {code}: {err.strip()}")
        raise SystemExit(report())


code, _, err = fleet("stage", "logreg", f"{REPO}:v1", "--plain-http")
check(code, err, "stage v1")
wait_for("v1 gated on every replica", lambda: loaded_everywhere(d1))
check(*fleet("activate", "logreg")[::2], "activate v1")
wait_for("every replica ready on v1", lambda: all(r.ready() and r.live() == V1 for r in replicas))

front, stats_sock = free_port(), f"{WORK}/haproxy.sock"
servers = "\n".join(f"    server {r.name} {r.addr} check" for r in replicas)
with open(f"{WORK}/haproxy.cfg", "w") as f:
    f.write(f"""global
    stats socket {stats_sock} level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
frontend front
    bind 127.0.0.1:{front}
    default_backend replicas
backend replicas
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}
""")
haproxy = start(["haproxy", "-f", f"{WORK}/haproxy.cfg"], f"{WORK}/haproxy.log")
wait_for("haproxy", lambda: http("GET", f"http://127.0.0.1:{front}/readyz")[0] == 200)

body = {"features": {"amount_usd_log": 6.0, "cross_border": True, "email_domain_free": True,
                     "email_domain_disposable": False, "email_local_digits": 3, "is_night": True,
                     "mcc_high_risk": False, "ip_private": False}}
json.dump(body, open(f"{WORK}/logreg.json", "w"))


def hammer(addr, seconds, rate, connections=4, versions=True):
    args = [f"{BIN}/hammer", "--addr", addr, "--duration", str(seconds), "--connections", str(connections),
            "--rate", str(rate), "--target", f"logreg,/v1/plugins/logreg/score,{WORK}/logreg.json,1"]
    if versions:
        args.append("--versions")
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


# --- the scenarios, under load -----------------------------------------------
load_seconds = 45 + ROUNDS * 3
load = hammer(f"127.0.0.1:{front}", load_seconds, 200, connections=16)
started = time.monotonic()
convergence_ms = []


def rollout(target_version, op, *args):
    t0 = time.monotonic()
    code, _, err = fleet(op, "logreg", *args)
    check(code, err, f"{op} to {target_version}")
    while not all(r.live() == target_version for r in replicas):
        if time.monotonic() - t0 > 60:
            failures.append(f"{op}: not every replica serves {target_version} after 60 s")
            raise SystemExit(report())
        time.sleep(0.01)
    convergence_ms.append((time.monotonic() - t0) * 1000)
    time.sleep(0.5)  # serve it for a moment under load before the next change


# 1. Roll out and back, ROUNDS times.
for i in range(ROUNDS):
    check(*fleet("stage", "logreg", f"{REPO}@{d2}")[::2], "stage v2")
    wait_for("v2 gated everywhere", lambda: loaded_everywhere(d2))
    rollout(V2, "activate")
    rollout(V1, "rollback")
wait_for("convergence", converged)

# 2. Restart every replica in turn.
for r in replicas:
    stop(r.proc, timeout=30)
    r.start()
    wait_for(f"{r.name} ready again", r.ready, seconds=120)
    time.sleep(1.5)  # haproxy's `rise 1` at 500 ms: back in the pool

# 3. etcd stops: serving goes on; a replica restarted serves its persisted state.
stop(etcd)
r = replicas[0]
stop(r.proc, timeout=30)
r.start()
wait_for("r1 ready from its persisted state", r.ready, seconds=60)
persisted_ok = r.live() == V1
if not persisted_ok:
    failures.append(f"r1 restarted without etcd serves {r.live()}, not {V1}")
time.sleep(1.5)
etcd = start_etcd()
wait_for("every replica reporting after etcd's restart",
         lambda: len(status().get("replicas", [])) == 3 and converged(), seconds=60)

# 4. The registry stops; roll forward (cached) and back.
check(*fleet("stage", "logreg", f"{REPO}@{d2}")[::2], "stage v2 (cached)")
wait_for("v2 gated everywhere", lambda: loaded_everywhere(d2))
stop(registry)
rollout(V2, "activate")
rollout(V1, "rollback")

# 5. A version one replica refuses: a fourth replica with a small upload limit.
small = Replica("r4", ["--max-upload-bytes", "1000"])
wait_for("r4 reporting", lambda: len(status().get("replicas", [])) == 4)
registry = start(["docker-registry", "serve", f"{WORK}/registry.yml"], f"{WORK}/registry.log")
wait_for("the registry again", lambda: http("GET", f"http://{REGISTRY}/v2/")[0] == 200)
check(*fleet("stage", "logreg", f"{REPO}@{d3}")[::2], "stage v3")


def refused_on_r4_only():
    rs = status().get("replicas", [])
    by_id = {r["id"]: r["plugins"].get("logreg", {}) for r in rs}
    return len(rs) == 4 and d3 in by_id.get(small.name, {}).get("failed", {}) and all(
        d3 in by_id.get(x.name, {}).get("loaded", []) for x in replicas)


wait_for("v3 gated on r1-r3 and refused on r4", refused_on_r4_only)
code, _, err = fleet("activate", "logreg")
refusal_named = code == 2 and f"{small.name} (" in err and all(f"{x.name} (" not in err for x in replicas)
if not refusal_named:
    failures.append(f"activating v3 should be refused naming r4 only: exit {code}: {err.strip()}")
stop(small.proc)

# The rest of the load, then only v1 must answer.
scenarios_seconds = time.monotonic() - started
if scenarios_seconds > load_seconds:
    failures.append(f"the scenarios took {scenarios_seconds:.0f} s, longer than the load ({load_seconds} s)")
remaining = load_seconds - (time.monotonic() - started)
out, _ = load.communicate(timeout=max(remaining, 0) + 60)
during = json.loads(out)
after = json.loads(hammer(f"127.0.0.1:{front}", 2, 200).communicate(timeout=60)[0])
haproxy_stat = subprocess.run(["sh", "-c", f"echo 'show stat' | python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('{stats_sock}'); s.sendall(b'show stat\\n'); print(s.makefile().read())\""], capture_output=True, text=True).stdout
retries = redispatches = 0
for line in haproxy_stat.splitlines():
    if line.startswith("replicas,BACKEND"):
        cols = line.split(",")
        retries, redispatches = int(cols[15] or 0), int(cols[16] or 0)


def outcomes(summary):
    return summary["targets"]["logreg"]["outcomes"]


bad = {k: v for k, v in outcomes(during).items() if not (k.startswith("200 v=") and k[6:] in (V1, V2))}
if bad:
    failures.append(f"non-2xx, errors or unexpected versions through haproxy: {bad}")
if set(outcomes(after)) != {f"200 v={V1}"}:
    failures.append(f"after convergence, not only {V1} answers: {outcomes(after)}")
if during.get("skipped"):
    failures.append(f"{during['skipped']} requests skipped (every connection busy)")

# --- fleet mode's cost on the request path -------------------------------------
for p in [haproxy, *[r.proc for r in replicas]]:
    stop(p, timeout=30)
rates = {"off": [], "on": []}
single = Replica("ratio")
wait_for("the ratio replica", single.ready, seconds=120)
stop(single.proc, timeout=30)
for _ in range(ALTERNATE):
    for mode in ("off", "on"):
        fleet_args = [] if mode == "off" else ["--fleet-etcd", ETCD, "--fleet-prefix", PREFIX, "--fleet-plain-http"]
        p = start([f"{BIN}/scorehost", "--cache-dir", f"{WORK}/cache-ratio", "serve", "--store",
                   f"{WORK}/store-ratio", "--admin-token-file", f"{WORK}/token", "--addr", single.addr,
                   *fleet_args], f"{WORK}/ratio-{mode}.log")
        wait_for(f"fleet {mode}", lambda: http("GET", f"http://{single.addr}/v1/plugins/logreg")[0] == 200,
                 seconds=120)
        run = json.loads(hammer(single.addr, RATIO_SECONDS, 0, connections=8, versions=False)
                         .communicate(timeout=RATIO_SECONDS + 60)[0])
        rates[mode].append(run["targets"]["logreg"]["rps"])
        stop(p, timeout=30)


def report():
    conv = sorted(convergence_ms)
    summary = {
        "rounds": ROUNDS,
        "rollouts_and_rollbacks": len(conv),
        "scenarios_seconds": round(globals().get("scenarios_seconds", 0), 1),
        "load_seconds": globals().get("load_seconds"),
        "convergence_ms": {"p50": round(statistics.median(conv), 1) if conv else None,
                           "max": round(max(conv), 1) if conv else None},
        "through_haproxy": globals().get("during", {}).get("targets", {}).get("logreg", {}),
        "after_convergence": globals().get("after", {}).get("targets", {}).get("logreg", {}).get("outcomes"),
        "haproxy_retries": globals().get("retries"),
        "haproxy_redispatches": globals().get("redispatches"),
        "restarted_without_etcd_serves_persisted": globals().get("persisted_ok"),
        "refused_naming_the_replica": globals().get("refusal_named"),
        "rps_fleet_off": [round(r) for r in rates["off"]] if "rates" in globals() else None,
        "rps_fleet_on": [round(r) for r in rates["on"]] if "rates" in globals() else None,
        "failures": failures,
    }
    if "rates" in globals() and rates["off"] and len(rates["on"]) == len(rates["off"]):
        # Each "on" round runs right after its "off" round: the median of the
        # pairs' ratios cancels most of the machine's drift between rounds.
        pairs = [on / off for on, off in zip(rates["on"], rates["off"])]
        summary["on_off_ratio"] = round(statistics.median(pairs), 4)
        summary["on_off_pair_ratios"] = [round(r, 3) for r in pairs]
    print(json.dumps(summary, indent=2))
    for p in procs:
        if p.poll() is None:
            p.kill()
    if failures:
        for name in ("r1", "r2", "r3", "r4", "haproxy"):
            path = f"{WORK}/{name}.log"
            if os.path.exists(path):
                print(f"--- {name}.log (tail) ---", file=sys.stderr)
                print("".join(open(path).readlines()[-30:]), file=sys.stderr)
    return 1 if failures else 0


try:
    code = report()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
sys.exit(code)
