#!/usr/bin/env bash
# Installs the system packages a build needs, when missing (Debian/Ubuntu).
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v c++ >/dev/null 2>&1 || need+=(g++)
# rocksdb's bindings are generated with libclang; the -dev package brings the unversioned
# library and clang's headers, which a runtime-only libclang lacks.
if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
  need+=(libclang-dev)
fi

if ((${#need[@]})); then
  echo "installing system packages: ${need[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: please install ${need[*]} (no apt-get here)" >&2
    exit 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (rustup, or Debian's cargo package) and retry" >&2
  exit 1
fi
