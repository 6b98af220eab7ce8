# Sourced by benches/isolation.sh, benches/soak.sh and benches/fresh.sh: builds scorehost, hammer
# and stage-plugins in $PROFILE (release by default; dev reuses the test build),
# sets $bin to where they are and $work to a scratch directory, and kills every
# pid in $pids and removes $work on exit.
PROFILE=${PROFILE:-release}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorehost-target}"
profile_flag=--release; [ "$PROFILE" = release ] || profile_flag="--profile=$PROFILE"
cargo build $profile_flag --locked -p scorehost-cli -p scorehost-benches \
  --bin scorehost --bin hammer --bin stage-plugins >&2
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# serve NAME PORT DIR: `scorehost serve --plugins DIR` on 127.0.0.1:PORT (its
# own cache, log in $work/NAME.log), waited for on /healthz (up to 2 min).
serve() {
  "$bin/scorehost" --cache-dir "$work/cache-$1" serve --plugins "$3" --addr "127.0.0.1:$2" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$2/healthz" && return 0
    sleep 0.2
  done
  echo "$1 did not start; its log:" >&2; cat "$work/$1.log" >&2; exit 1
}
