#!/usr/bin/env bash
# Installs what checks the Helm chart without a Kubernetes cluster, once, outside the work
# tree: Helm's own SDK (helm-python-sdk) and kubernetes-validate from PyPI in a virtualenv, and
# promtool (Debian's prometheus package) for the alert rules. Prints the virtualenv's python.
set -euo pipefail

VENV="${TELEX_HELM_VENV:-$HOME/telex-helm-venv}"
want="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4"

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
exec 9>"$VENV.lock"
flock 9

if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >&2
fi
marker="$VENV/.telex-$(echo "$want" | tr ' =' '__')"
if [ ! -f "$marker" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check $want >&2
  touch "$marker"
fi
echo "$VENV/bin/python"
