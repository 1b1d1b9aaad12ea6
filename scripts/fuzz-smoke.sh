#!/usr/bin/env bash
# Runs each cargo-fuzz target briefly (default 20 s each) from its seed corpus:
#   xml_stream     the XMPP stream parser on arbitrary bytes in arbitrary chunkings;
#   xmpp_session   an authenticated XMPP session fed arbitrary stanzas;
#   client_frames  the native Session stream fed arbitrary protobuf frames.
# Needs a nightly toolchain and cargo-fuzz; installs cargo-fuzz when missing. Skips, saying why,
# when no nightly toolchain can be had. `scripts/fuzz-smoke.sh 600` is the long run by hand;
# a second argument names the targets to run.
set -euo pipefail
cd "$(dirname "$0")/../crates/telex-xmpp/fuzz"
secs="${1:-20}"
targets="${2:-xml_stream xmpp_session client_frames}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  if ! rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    echo "fuzz smoke: skipped (no nightly toolchain available)"
    exit 0
  fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# Its own target dir: the sanitizer build shares nothing with the main one.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/telex-fuzz-target}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $targets; do
  mkdir -p "$work/$target"
  cp corpus/"$target"/* "$work/$target/"
  if ! cargo +nightly fuzz run "$target" "$work/$target" -- -max_total_time="$secs" -max_len=8192 \
    -rss_limit_mb=2048 >"$work/$target.log" 2>&1; then
    tail -n 60 "$work/$target.log"
    echo "fuzz smoke: $target FAILED (the input is in crates/telex-xmpp/fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  grep -E "^Done|DONE" "$work/$target.log" | tail -n 2 || true
  echo "fuzz smoke: $target ran ${secs}s without a failure"
done
