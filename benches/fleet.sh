#!/usr/bin/env bash
# Fleet mode on one machine: etcd, an OCI registry, three replicas and haproxy,
# all real (Debian's etcd-server, docker-registry and haproxy) on free loopback
# ports with temp dirs, under bounded load through haproxy, while:
#   1. ROUNDS times: stage v2, activate it (two-phase), then roll back to v1,
#      timing activate → every replica serving the new version (10 ms polls);
#   2. every replica is restarted in turn (SIGTERM, drained, started again);
#   3. etcd is stopped; serving goes on; a replica restarted then serves its
#      persisted state; etcd is started again and the replicas report again;
#   4. the registry is stopped and the fleet rolls back (cached digests);
#   5. a version that one replica refuses (its --max-upload-bytes is below the
#      version's size) is staged: activation is refused naming that replica.
# Pass/fail: zero non-2xx and zero connection errors through haproxy across
# all of it (haproxy's retries and redispatches are printed too, so a retry
# cannot hide a failure), every answer's version in {v1, v2}, and after the
# last convergence only the final version answers.
#
# Then the cost of fleet mode on the request path: one replica served with
# and without --fleet-etcd, closed-loop hammer straight at it, ALTERNATE
# pairs of rounds (off, then on); the median of the pairs' ratios.
#
#   benches/fleet.sh                            # ROUNDS=20 ALTERNATE=5, release build
#   ROUNDS=3 PROFILE=dev benches/fleet.sh       # the short CI pass (.ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-20}
ALTERNATE=${ALTERNATE:-5}
RATIO_SECONDS=${RATIO_SECONDS:-5}
PROFILE=${PROFILE:-release}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorehost-target}"
for b in etcd docker-registry haproxy curl; do
  command -v "$b" >/dev/null || { echo "$b is not installed (.ci/run installs it with apt-get)" >&2; exit 1; }
done
profile_flag=--release; [ "$PROFILE" = release ] || profile_flag="--profile=$PROFILE"
cargo build $profile_flag --locked -p scorehost-cli -p scorehost-benches --features scorehost-cli/fleet \
  --bin scorehost --bin hammer --bin stage-plugins >&2
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/stage-plugins" "$work/plugins" logreg >/dev/null
exec python3 benches/fleet_run.py "$bin" "$work" "$ROUNDS" "$ALTERNATE" "$RATIO_SECONDS"
