#!/usr/bin/env bash
# Telex side by side with ejabberd and Prosody: the same XMPP scenario against each server on
# loopback (plain c2s, rate shapers off, the same users), Telex both as one node and as a
# 3-node cluster. Installs ejabberd and Prosody from Debian's packages when missing (without
# starting their services); each runs here with its own configuration and data directory.
#
#   loadtest/compare.sh [RATE] [DURATION] [SERVERS]
#     RATE      the common rate for latency, CPU and memory (default 1000 msg/s); the rate
#               ladder for "max sustained" starts there: up by steps while delivery p99 stays
#               within 50 ms (x1.5, 2, 3, 4, 6, 8, 12, 16, 24), down if it does not (x0.5, 0.25)
#     DURATION  measured seconds per step (default 10)
#     SERVERS   comma-separated, of telex,telex-cluster,prosody,ejabberd (default: all); the
#               table keeps earlier rows of the servers left out
#
# Per server: the chat scenario (1,000 users, 20 contacts each) at RATE, then the ladder; then
# a login storm.
# Writes loadtest-compare/<server>-<rate>/ (each run's report) and loadtest-compare/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-1000}"
DURATION="${2:-10}"
SERVERS="${3:-telex,telex-cluster,prosody,ejabberd}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/telex-target}"
BIN="$CARGO_TARGET_DIR/release"
OUT="$PWD/loadtest-compare"
USERS=1000
STORM=5000 # accounts for the login storm (lt0 .. lt4999)
P99_LIMIT_MS=50
mkdir -p "$OUT"
# Rows of servers not measured this time are kept, so one server can be measured again.
if [ -f "$OUT/rows.jsonl" ]; then
  python3 - "$OUT/rows.jsonl" "$SERVERS" <<'PY'
import json, sys
keep = [l for l in open(sys.argv[1]) if json.loads(l)["server"] not in sys.argv[2].split(",")]
open(sys.argv[1], "w").writelines(keep)
PY
fi
# The servers' own users (ejabberd's runs as `ejabberd`) must reach the work directory.
work=$(mktemp -d /tmp/telex-compare.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${EJ:-}" ] && $EJ stop >/dev/null 2>&1 || true
  [ -d "$work/cluster" ] && TELEX_CLUSTER_DIR="$work/cluster" cluster/local.sh stop >/dev/null 2>&1 || true
  sleep 1
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

sudo=""; if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
missing=()
command -v prosody >/dev/null 2>&1 || missing+=(prosody)
command -v ejabberdctl >/dev/null 2>&1 || missing+=(ejabberd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  # No service start during the install: each server runs here with its own configuration.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
  $sudo rm -f /usr/sbin/policy-rc.d
fi
cargo build --release --bins -q

# The chat scenario for every step: users log in quickly, then a short ramp and warm-up.
cat >"$work/chat.toml" <<TOML
name = "chat"
users = $USERS
contacts = 20
login_rate = 500.0
ramp_up_secs = 2
warm_up_secs = 2
duration_secs = $DURATION
TOML

# CPU seconds (user + system) and RSS (KiB) of a set of processes.
cpu() { for p in "$@"; do awk '{ print ($14 + $15) / 100 }' "/proc/$p/stat"; done | awk '{ s += $1 } END { printf "%.2f", s }'; }
rss_kib() { for p in "$@"; do awk '/VmRSS/ { print $2 }' "/proc/$p/status"; done | awk '{ s += $1 } END { print s }'; }

# One step of the ladder: the chat scenario at RATE against NAME at ADDRS; PIDS are the
# server's processes. Prints the p99 verdict ("ok" or "over"); CPU and memory are recorded.
step() {
  local name=$1 addrs=$2 pids_csv=$3 admin=$4 provision=$5 rate=$6
  local ps; IFS=, read -r -a ps <<<"$pids_csv"
  local rss0 cpu0 cpu1 rss1 dir="$OUT/$name-$rate"
  rss0=$(rss_kib "${ps[@]}"); cpu0=$(cpu "${ps[@]}")
  # Memory is sampled while the users are connected (the tool holds them until it ends).
  ( peak=0; while true; do r=$(rss_kib "${ps[@]}" 2>/dev/null || echo 0); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$work/$name.peak"; sleep 0.5; done ) &
  local sampler=$!
  local args=(run --scenario "$work/chat.toml" --rate "$rate" --server "$addrs" --admin "$admin" --out "$dir")
  [ -n "$provision" ] && args+=(--provision-command "$provision")
  if ! "$BIN/telex-loadtest" "${args[@]}" >"$dir.stdout" 2>"$dir.stderr"; then
    kill "$sampler" 2>/dev/null || true
    echo "$name at $rate msg/s: run failed:" >&2; tail -5 "$dir.stderr" >&2
    echo over; return
  fi
  kill "$sampler" 2>/dev/null || true
  cpu1=$(cpu "${ps[@]}"); rss1=$(cat "$work/$name.peak" 2>/dev/null || rss_kib "${ps[@]}")
  python3 - "$dir/result.json" "$name" "$rate" "$rss0" "$rss1" "$cpu0" "$cpu1" "$USERS" "$P99_LIMIT_MS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
name, rate = sys.argv[2], float(sys.argv[3])
rss0, rss1, cpu0, cpu1, users, limit = map(float, sys.argv[4:10])
msgs = s["sent_per_sec"] * float(r["scenario"]["duration_secs"] + r["scenario"]["ramp_up_secs"] + r["scenario"]["warm_up_secs"])
errors = sum(s["errors"].values())
ok = s["delivery_p99_ms"] <= limit and s["delivered_per_sec"] >= 0.95 * rate and errors <= 0.001 * msgs
row = {"server": name, "rate": rate, "delivered": s["delivered_per_sec"], "p50": s["delivery_p50_ms"],
       "p99": s["delivery_p99_ms"], "kib_per_user": (rss1 - rss0) / users,
       "cpu_per_1000": (cpu1 - cpu0) / max(msgs, 1) * 1000, "errors": errors, "ok": ok}
with open(sys.argv[1].rsplit("/", 2)[0] + "/rows.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
print("ok" if ok else "over")
PY
}

# The ladder, then the login storm, against one server.
measure() {
  local name=$1 addrs=$2 pids_csv=$3 admin=$4 provision=${5:-}
  local rate verdict
  # RATE first (the common-rate figures); then up in steps while p99 holds, or down if not.
  verdict=$(step "$name" "$addrs" "$pids_csv" "$admin" "$provision" "$RATE")
  echo "$name: $RATE msg/s -> $verdict" >&2
  if [ "$verdict" = ok ]; then ladder="150 200 300 400 600 800 1200 1600 2400"; else ladder="50 25"; fi
  for pct in $ladder; do
    rate=$((RATE * pct / 100))
    verdict=$(step "$name" "$addrs" "$pids_csv" "$admin" "$provision" "$rate")
    echo "$name: $rate msg/s -> $verdict" >&2
    if [ "$pct" -gt 100 ]; then [ "$verdict" = ok ] || break; else [ "$verdict" = ok ] && break; fi
  done
  # Logins per second, offered faster than any server takes them.
  local args=(run --preset login-storm --server "$addrs" --admin "$admin" --out "$OUT/$name-logins")
  [ -n "$provision" ] && args+=(--provision-command "$provision")
  "$BIN/telex-loadtest" "${args[@]}" >/dev/null 2>"$OUT/$name-logins.stderr" || echo "$name: login storm failed" >&2
}

telex_ready() { until curl -fs "http://$1/readyz" >/dev/null 2>&1; do sleep 0.2; done; }

# --- Telex, one node ---
if [[ ",$SERVERS," == *,telex,* ]]; then
  "$BIN/telexd" --data-dir "$work/telex" --client-addr 127.0.0.1:17500 --node-addr 127.0.0.1:17501 \
    --admin-addr 127.0.0.1:17502 --http-addr 127.0.0.1:17580 --xmpp-addr 127.0.0.1:17522 \
    --xmpp-tls-addr 127.0.0.1:17523 >"$work/telex.log" 2>&1 &
  pids+=($!); telex=$!
  telex_ready 127.0.0.1:17580
  # Raise the per-user send limit out of the way, as the other servers' shapers are.
  "$BIN/telex" --admin 127.0.0.1:17502 tenant limits localhost --sends-per-second 100000 >/dev/null
  measure telex 127.0.0.1:17522 "$telex" 127.0.0.1:17502
  kill "$telex"; wait "$telex" 2>/dev/null || true
fi

# --- Telex, 3-node cluster (all three on this machine's two cores) ---
if [[ ",$SERVERS," == *,telex-cluster,* ]]; then
  export TELEX_CLUSTER_DIR="$work/cluster"
  cluster/local.sh start >/dev/null
  # Every group replicated three ways before measuring.
  until "$BIN/telex" --admin 127.0.0.1:7412 --json cluster status 2>/dev/null | python3 -c '
import json, sys
g = json.load(sys.stdin)["groups"]
sys.exit(0 if all(len(x["voters"]) == 3 and x["leader"] for x in g) else 1)'; do sleep 0.5; done
  "$BIN/telex" --admin 127.0.0.1:7412 tenant limits localhost --sends-per-second 100000 >/dev/null
  cluster_pids=$(cat "$work/cluster"/n{1,2,3}.pid | paste -sd,)
  measure telex-cluster 127.0.0.1:7414,127.0.0.1:7424,127.0.0.1:7434 "$cluster_pids" 127.0.0.1:7412
  cluster/local.sh stop >/dev/null
  unset TELEX_CLUSTER_DIR
fi

# --- Prosody 0.12 ---
if [[ ",$SERVERS," == *,prosody,* ]]; then
  mkdir -p "$work/prosody/data/localhost/accounts"
  for ((u = 0; u < STORM; u++)); do
    printf 'return {\n\t["password"] = "loadtest";\n};\n' >"$work/prosody/data/localhost/accounts/lt$u.dat"
  done
  cat >"$work/prosody/prosody.cfg.lua" <<CFG
run_as_root = true
daemonize = false
pidfile = "$work/prosody/prosody.pid"
data_path = "$work/prosody/data"
log = { warn = "$work/prosody/prosody.log" }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "smacks"; "carbons"; "offline"; "posix" }
modules_disabled = { "s2s"; "tls" }
c2s_ports = { 17622 }
c2s_interfaces = { "127.0.0.1" }
http_ports = {}
https_ports = {}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
limits = { c2s = { rate = "1000mb/s"; burst = "10s" } }
VirtualHost "localhost"
CFG
  prosody --config "$work/prosody/prosody.cfg.lua" -F >"$work/prosody.out" 2>&1 &
  pids+=($!); prosody_pid=$!
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/17622) 2>/dev/null && break; sleep 0.2; done
  measure prosody 127.0.0.1:17622 "$prosody_pid" none || tail -20 "$work/prosody.out" "$work/prosody/prosody.log"
  kill "$prosody_pid"; wait "$prosody_pid" 2>/dev/null || true
fi

# --- ejabberd 23.01 ---
if [[ ",$SERVERS," == *,ejabberd,* ]]; then
  ej="$work/ejabberd"
  mkdir -p "$ej/spool" "$ej/logs"
  cp /etc/ejabberd/inetrc "$ej/"
  cat >"$ej/ejabberd.yml" <<YML
hosts: ["localhost"]
loglevel: warning
certfiles: []
listen:
  - port: 17722
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    backlog: 1024
    shaper: none
    access: c2s
    starttls: false
access_rules:
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 100000
auth_method: internal
auth_password_format: plain
modules:
  mod_roster: {}
  mod_stream_mgmt: {}
  mod_carboncopy: {}
  mod_disco: {}
  mod_ping: {}
  mod_offline: {}
YML
  # ejabberdctl starts the server through `su ejabberd`, which applies PAM limits: 1,024 files
  # by default, fewer than the users here.
  limits=/etc/security/limits.d/telex-loadtest-ejabberd.conf
  [ -f "$limits" ] || echo "ejabberd - nofile $(ulimit -Hn)" | $sudo tee "$limits" >/dev/null
  printf 'ERLANG_NODE=telexlt@localhost\nEJABBERD_CONFIG_PATH=%s\nERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n' \
    "$ej/ejabberd.yml" >"$ej/ejabberdctl.cfg"
  # Users in one import (XEP-0227), not one `ejabberdctl register` (~0.4 s) each.
  python3 -c "import sys; print(\"<?xml version='1.0'?><server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>\" \
    + ''.join(f\"<user name='lt{u}' password='loadtest'/>\" for u in range(int(sys.argv[1]))) + '</host></server-data>')" \
    "$STORM" >"$ej/users.xml"
  chown -R ejabberd "$ej" 2>/dev/null || true
  EJ="ejabberdctl --ctl-config $ej/ejabberdctl.cfg --config-dir $ej --spool $ej/spool --logs $ej/logs"
  $EJ start
  $EJ started
  $EJ import_piefxis "$ej/users.xml"
  ej_pid=$(pgrep -f 'beam.smp.*telexlt@localhost' | head -1)
  measure ejabberd 127.0.0.1:17722 "$ej_pid" none || tail -20 "$ej/logs/error.log"
  $EJ stop >/dev/null; EJ=""
fi

# --- The table ---
python3 - "$OUT/rows.jsonl" "$OUT" "$RATE" "$DURATION" "$P99_LIMIT_MS" >"$OUT/table.md" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, rate, duration, limit = sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
servers = list(dict.fromkeys(r["server"] for r in rows))
def logins(name):
    p = os.path.join(out, name + "-logins", "result.json")
    return json.load(open(p))["summary"]["logins_per_sec"] if os.path.exists(p) else float("nan")
fig = {}
for s in servers:
    mine = [r for r in rows if r["server"] == s]
    base = next((r for r in mine if r["rate"] == rate), mine[0])
    sustained = max([r["rate"] for r in mine if r["ok"]], default=0.0)
    fig[s] = dict(base, sustained=sustained, logins=logins(s))
print(f"Chat scenario (1,000 users, 20 contacts each), XMPP plain c2s on loopback, {duration} s measured per step.")
print(f"Max sustained: the highest offered rate of the ladder (x0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24 of {rate:.0f} msg/s) with delivery")
print(f"p99 <= {limit} ms, >= 95% delivered and <= 0.1% errors. Latency, memory and CPU at {rate:.0f} msg/s: memory is the peak RSS")
print("growth during that run per connected user; CPU the server's CPU seconds over it (logins included) per 1,000 messages.")
print("Logins/s from the login-storm preset (5,000 logins offered at 2,000/s).\n")
print("| server | max sustained msg/s | delivered msg/s | p50 ms | p99 ms | logins/s | KiB per connected user | CPU s per 1,000 msgs | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in servers:
    f = fig[s]
    print(f"| {s} | {f['sustained']:.0f} | {f['delivered']:.0f} | {f['p50']:.1f} | {f['p99']:.1f} | {f['logins']:.0f} | {f['kib_per_user']:.1f} | {f['cpu_per_1000']:.3f} | {f['errors']} |")
print("\n| ratio Telex / peer | max sustained | p50 | p99 | logins/s | memory/user | CPU/1,000 msgs |\n|---|---:|---:|---:|---:|---:|---:|")
q = lambda a, b, k: a[k] / b[k] if b[k] else float("nan")
for t in [s for s in servers if s.startswith("telex")]:
    for p in [s for s in servers if not s.startswith("telex")]:
        a, b = fig[t], fig[p]
        print(f"| {t} / {p} | {q(a, b, 'sustained'):.2f} | {q(a, b, 'p50'):.2f} | {q(a, b, 'p99'):.2f} | {q(a, b, 'logins'):.2f} | {q(a, b, 'kib_per_user'):.2f} | {q(a, b, 'cpu_per_1000'):.2f} |")
PY
cat "$OUT/table.md"
