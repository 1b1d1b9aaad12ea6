#!/usr/bin/env bash
# Installs go-sendxmpp (Debian's package: an XMPP client in Go, a third client stack for the
# tests) when missing; prints its path.
set -euo pipefail
if ! command -v go-sendxmpp >/dev/null 2>&1; then
  echo "installing go-sendxmpp" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  exec 9>/tmp/telex-go-sendxmpp.lock
  flock 9
  if ! command -v go-sendxmpp >/dev/null 2>&1; then
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq go-sendxmpp >&2
  fi
fi
command -v go-sendxmpp
