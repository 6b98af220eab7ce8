# Sourced by benches/isolation.sh and benches/soak.sh: builds scorehost, hammer
# and stage-plugins in $PROFILE (release by default; dev reuses the test build),
# sets $bin to where they are and $work to a scratch directory, and kills every
# pid in $pids and removes $work on exit.
PROFILE=${PROFILE:-release}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorehost-target}"
profile_flag=--release; [ "$PROFILE" = release ] || profile_flag="--profile=$PROFILE"
cargo build $profile_flag --locked -p scorehost -p scorehost-benches \
  --bin scorehost --bin hammer --bin stage-plugins >&2
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
