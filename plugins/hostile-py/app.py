"""hostile-py — a Python plugin that misbehaves on request.

Shows: fuel, the deadline and the memory cap stop a Python plugin as they stop
a Rust one, and the network stays shut. The `mode` input picks the misdeed:

- `loop`: `while True: pass` — `out_of_fuel` (or `deadline_exceeded` under a
  tighter deadline);
- `recursion`: unbounded recursion — CPython's own limit raises RecursionError,
  reported as an internal plugin error naming it;
- `recursion-unbounded`: the same after `sys.setrecursionlimit(10**9)` — the
  frames live on the heap, so fuel or the memory cap ends it;
- `memory`: 1 MiB at a time, kept — `memory_limit`;
- `memory-big`: one 200 MiB allocation — `memory_limit`;
- `socket`: a TCP socket connected to `addr` (host:port) — creating it is
  denied before any system call, reported as an internal plugin error naming
  it; `resolve`: a name lookup of `addr` — refused the same way;
- `log-flood`: 1,000 warnings through the SDK's `log` — the host keeps the
  first 100 of the call (its per-call cap), tagged with plugin and version,
  and the call answers 0.5;
- anything else, or absent: 0.5.

Modules must be imported at the top: componentize-py keeps what was imported
when it built the component, and there is no file system to import from later.

Run: cargo test -p scorehost --test all python (built by plugins/artifacts).
"""

import encodings.idna  # noqa: F401 - socket encodes host names with it, at call time
import socket
import sys

import scorehost_guest as sh


def deep(n):
    return deep(n + 1) + 1


class Hostile(sh.Scorer):
    name, version = "hostile-py", "0.1.0"
    description = "Misbehaves as asked: loop, recursion, memory, socket."
    inputs = [sh.Field.text("mode"), sh.Field.text("addr", doc="host:port, for `socket`")]

    def score(self, f):
        mode = f.text_opt("mode") or ""
        if mode == "loop":
            while True:
                pass
        if mode == "recursion":
            deep(0)
        if mode == "recursion-unbounded":
            sys.setrecursionlimit(10**9)
            deep(0)
        if mode == "memory":
            hog = []
            while True:
                hog.append(bytearray(1 << 20))
        if mode == "memory-big":
            return sh.Score(float(len(bytearray(200 << 20))))
        if mode == "socket":
            host, port = f.text("addr").rsplit(":", 1)
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.connect((host, int(port)))
                s.close()
            except OSError as e:
                raise sh.PluginError.internal(f"connect {host}:{port}: {e}") from None
            return sh.Score(1.0)
        if mode == "resolve":
            try:
                socket.getaddrinfo(f.text("addr"), 80)
            except OSError as e:
                raise sh.PluginError.internal(f"resolve {f.text('addr')}: {e}") from None
            return sh.Score(1.0)
        if mode == "log-flood":
            for i in range(1000):
                sh.log.warn(f"line {i}")
        return sh.Score(0.5)


Scorer, FrameScorer = sh.export_scorer(Hostile)
