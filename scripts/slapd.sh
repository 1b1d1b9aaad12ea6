#!/usr/bin/env bash
# Installs OpenLDAP's server and tools (Debian's slapd and ldap-utils: the directory server the
# LDAP sync tests run) when missing, without configuring a system instance; prints slapd's path.
set -euo pipefail
if ! command -v slapd >/dev/null 2>&1 && [ ! -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null 2>&1; then
  echo "installing slapd and ldap-utils" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  exec 9>/tmp/telex-slapd.lock
  flock 9
  if [ ! -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null 2>&1; then
    echo 'slapd slapd/no_configuration boolean true' | $sudo debconf-set-selections
    # No system instance is started: each test runs its own.
    policy=/usr/sbin/policy-rc.d
    created=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
      $sudo chmod +x "$policy"
      created=1
    fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq slapd ldap-utils >&2
    if [ -n "$created" ]; then $sudo rm -f "$policy"; fi
  fi
fi
if command -v slapd >/dev/null 2>&1; then command -v slapd; else echo /usr/sbin/slapd; fi
