#!/usr/bin/env bash
# Installs the XMPP clients the test suite drives (slixmpp and aioxmpp, from PyPI) into a
# virtualenv outside the work tree, once; prints the virtualenv's python. Used by the XMPP tests
# and benchmarks. aioxmpp needs pytz and lxml (wheels on PyPI).
set -euo pipefail

VENV="${TELEX_XMPP_VENV:-$HOME/telex-venv}"
want="slixmpp==1.10.0 aiohttp==3.13.2 aioxmpp==0.13.3 pytz==2026.6"

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "installing python3 and python3-venv" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >&2
fi

# Tests call this in parallel: one installs, the others wait.
exec 9>"$VENV.lock"
flock 9

if [ ! -f "$VENV/.telex-$(echo "$want" | tr ' =' '__')" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check $want >&2
  touch "$VENV/.telex-$(echo "$want" | tr ' =' '__')"
fi
echo "$VENV/bin/python"
