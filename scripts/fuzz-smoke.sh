#!/usr/bin/env bash
# Runs the XMPP stream-parser fuzz target briefly (default 20 s) from its seed corpus. Needs a
# nightly toolchain and cargo-fuzz; installs cargo-fuzz when missing. Skips, saying why, when no
# nightly toolchain can be had.
set -euo pipefail
cd "$(dirname "$0")/../crates/telex-xmpp/fuzz"
secs="${1:-20}"

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
cp corpus/xml_stream/* "$work/"
cargo +nightly fuzz run xml_stream "$work" -- -max_total_time="$secs" -max_len=8192 2>&1 | tail -n 5
echo "fuzz smoke: xml_stream ran ${secs}s without a failure"
