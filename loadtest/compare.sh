#!/usr/bin/env bash
# Telex side by side with ejabberd and Prosody: the same XMPP scenario against each server on
# loopback (plain c2s, rate shapers off, the same users). Installs ejabberd and Prosody from
# Debian's packages when missing (without starting their services); each runs here with its
# own configuration and data directory.
#
#   loadtest/compare.sh [--per-core] [--rooms] [RATE] [DURATION] [SERVERS]
#     RATE      the common rate for latency, CPU and memory (default 1000 msg/s); the rate
#               ladder for "max sustained" starts there: up by steps while delivery p99 stays
#               within 50 ms (x1.5, 2, 3, 4, 6, 8, 12, 16, 24), down if it does not (x0.5, 0.25)
#     DURATION  measured seconds per run (default 10)
#     SERVERS   comma-separated, of telex, telex-cluster, prosody, prosody-mam, ejabberd,
#               ejabberd-mam (the -mam rows archive every message: mod_mam); the table keeps
#               earlier rows of the servers left out
#
# Whole machine (default): servers and tool share both cores; Telex as one node and as a
#   3-node cluster; each rung run once; then a login storm. Default servers: telex,
#   telex-cluster, prosody, ejabberd. Writes loadtest-compare/.
# --per-core: each server pinned to core 0 (`taskset`), the tool to core 1; each rung run
#   REPEATS times (default 3) and the median kept; archives of the -mam servers emptied before
#   each run. Default servers: telex, ejabberd, ejabberd-mam, prosody, prosody-mam. Writes
#   loadtest-compare/per-core/.
#
# --rooms: group chat instead (XEP-0045 on conference.localhost): 1,000 users in 10 rooms of
#   100, RATE room messages/s (default 100, so 9,900 deliveries/s), the ladder's p99 limit
#   150 ms; writes loadtest-compare/rooms/ (per-core/rooms/ with --per-core).
#
# Per run: the chat scenario (1,000 users, 20 contacts each). CPU is the server's CPU time
# (user + system, every thread) over the measured window only (logins, ramp and warm-up
# excluded), per message delivered in that window. Telex keeps its archives across runs (they
# only grow, which costs Telex, never helps it).
set -euo pipefail
cd "$(dirname "$0")/.."
PER_CORE=0
ROOMS=0
while [ "${1:-}" = --per-core ] || [ "${1:-}" = --rooms ]; do
  case $1 in
    --per-core) PER_CORE=1 ;;
    --rooms) ROOMS=1 ;;
  esac
  shift
done
if [ "$ROOMS" = 1 ]; then RATE="${1:-100}"; else RATE="${1:-1000}"; fi
DURATION="${2:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/telex-target}"
BIN="$CARGO_TARGET_DIR/release"
USERS=1000
STORM=5000 # accounts for the login storm (lt0 .. lt4999)
P99_LIMIT_MS=50
# Deliveries per message: 1 in chat, the other 99 occupants of a room.
FANOUT=1
# 10 rooms of the 1,000 users: a room message reaches the other 99 occupants.
if [ "$ROOMS" = 1 ]; then P99_LIMIT_MS=150; FANOUT=$((USERS / 10 - 1)); fi
if [ "$PER_CORE" = 1 ]; then
  SERVERS="${3:-telex,ejabberd,ejabberd-mam,prosody,prosody-mam}"
  REPEATS="${REPEATS:-3}"
  OUT="$PWD/loadtest-compare/per-core"
  PIN_TOOL=(taskset -c 1)
  PIN_SERVER=(taskset -c 0)
else
  SERVERS="${3:-telex,telex-cluster,prosody,ejabberd}"
  REPEATS="${REPEATS:-1}"
  OUT="$PWD/loadtest-compare"
  PIN_TOOL=()
  PIN_SERVER=()
fi
[ "$ROOMS" = 1 ] && OUT="$OUT/rooms"
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
[[ "$SERVERS" != *prosody* ]] || command -v prosody >/dev/null 2>&1 || missing+=(prosody)
[[ "$SERVERS" != *ejabberd* ]] || command -v ejabberdctl >/dev/null 2>&1 || missing+=(ejabberd)
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

# The chat scenario for every run: users log in quickly, then a short ramp and warm-up.
cat >"$work/chat.toml" <<TOML
name = "chat"
users = $USERS
contacts = 20
login_rate = 500.0
ramp_up_secs = 2
warm_up_secs = 2
duration_secs = $DURATION
TOML
if [ "$ROOMS" = 1 ]; then
  cat >"$work/chat.toml" <<TOML
name = "rooms"
users = $USERS
rooms = 10
login_rate = 500.0
ramp_up_secs = 2
warm_up_secs = 2
duration_secs = $DURATION
TOML
fi

rss_kib() { for p in "$@"; do awk '/VmRSS/ { print $2 }' "/proc/$p/status"; done | awk '{ s += $1 } END { print s }'; }

# In per-core mode each server starts on core 0 (`PIN_SERVER`), so it sizes its thread pools
# (tokio workers, Erlang schedulers) for one core, as it would on a one-core machine; this
# catches any thread started otherwise.
pin_server() {
  [ "$PER_CORE" = 1 ] || return 0
  local p; for p in "$@"; do taskset -a -cp 0 "$p" >/dev/null; done
}

# One run of the scenario at RATE against the current server (ADDRS, PIDS, ADMIN, PROVISION).
# Appends a line of figures to $work/runs.jsonl.
run_once() {
  local name=$1 rate=$2 i=$3
  local ps; IFS=, read -r -a ps <<<"$PIDS"
  local dir="$OUT/$name-$rate-$i" rss0
  rss0=$(rss_kib "${ps[@]}")
  # The server's CPU time, sampled with wall-clock stamps, so the measured window is cut out
  # afterwards; memory peak while the users are connected.
  "${PIN_TOOL[@]}" python3 - "$work/cpu.samples" "${ps[@]}" <<'PY' &
import os, sys, time
tick = os.sysconf("SC_CLK_TCK")
with open(sys.argv[1], "w") as out:
    while True:
        cpu = rss = 0
        for p in sys.argv[2:]:
            try:
                f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                cpu += (int(f[11]) + int(f[12])) / tick
                rss += int(f[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
            except (OSError, IndexError, ValueError):
                pass
        out.write(f"{time.time()} {cpu} {rss}\n"); out.flush()
        time.sleep(0.1)
PY
  local sampler=$!
  local args=(run --scenario "$work/chat.toml" --rate "$rate" --server "$ADDRS" --admin "$ADMIN" --out "$dir")
  [ -n "$PROVISION" ] && args+=(--provision-command "$PROVISION")
  local ok=1
  if ! "${PIN_TOOL[@]}" "$BIN/telex-loadtest" "${args[@]}" >"$dir.stdout" 2>"$dir.stderr"; then
    echo "$name at $rate msg/s: run failed:" >&2; tail -5 "$dir.stderr" >&2; ok=0
  fi
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  [ "$ok" = 1 ] || return 0
  if ! python3 - "$dir/result.json" "$work/cpu.samples" "$name" "$rate" "$rss0" "$USERS" "$P99_LIMIT_MS" >>"$work/runs.jsonl" <<'PY'; then
import json, sys
r = json.load(open(sys.argv[1]))
samples = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 3]
if not samples:
    sys.exit("no CPU samples of the server were taken")
name, rate, rss0, users, limit = sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
s = r["summary"]
t0, t1 = r["measured_from_unix_us"] / 1e6, r["measured_to_unix_us"] / 1e6
def cpu_at(t):  # linear between the samples around t
    before = [x for x in samples if x[0] <= t][-1:] or samples[:1]
    after = [x for x in samples if x[0] >= t][:1] or samples[-1:]
    (ta, ca, _), (tb, cb, _) = before[0], after[0]
    return ca if tb == ta else ca + (cb - ca) * (t - ta) / (tb - ta)
window = max(t1 - t0, 1e-9)
delivered = s["delivered_per_sec"] * window
errors = sum(s["errors"].values())
peak = max((x[2] for x in samples), default=rss0)
print(json.dumps({"server": name, "rate": rate, "delivered": s["delivered_per_sec"], "p50": s["delivery_p50_ms"],
    "p99": s["delivery_p99_ms"], "kib_per_user": (peak - rss0) / users,
    "cpu_us_per_msg": (cpu_at(t1) - cpu_at(t0)) / max(delivered, 1) * 1e6,
    "cpu_cores": (cpu_at(t1) - cpu_at(t0)) / window, "errors": errors,
    "sent": s["sent_per_sec"] * window}))
PY
    echo "$name at $rate msg/s: run $i has no figures (counted as failed)" >&2
  fi
}

# One rung: REPEATS runs, the median of each figure into rows.jsonl. Sets VERDICT to "ok" or
# "over". (Not run in a subshell: emptying an archive may restart the server, changing PIDS.)
step() {
  local name=$1 rate=$2 i
  : >"$work/runs.jsonl"
  for ((i = 1; i <= REPEATS; i++)); do
    empty_archives "$name"
    run_once "$name" "$rate" "$i"
  done
  VERDICT=$(python3 - "$work/runs.jsonl" "$OUT/rows.jsonl" "$name" "$rate" "$REPEATS" "$P99_LIMIT_MS" "$FANOUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
name, rate, repeats, limit = sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
if len(runs) < repeats:  # a failed run fails the rung
    runs += [{"delivered": 0, "p50": float("inf"), "p99": float("inf"), "kib_per_user": 0, "cpu_us_per_msg": 0,
              "cpu_cores": 0, "errors": 1, "sent": 1}] * (repeats - len(runs))
med = lambda k: statistics.median(r[k] for r in runs)
row = {k: med(k) for k in ["delivered", "p50", "p99", "kib_per_user", "cpu_us_per_msg", "cpu_cores", "errors", "sent"]}
row.update(server=name, rate=rate, runs=len(runs), p99_runs=[r["p99"] for r in runs],
           cpu_runs=[round(r["cpu_us_per_msg"], 1) for r in runs])
row["ok"] = row["p99"] <= limit and row["delivered"] >= 0.95 * rate * float(sys.argv[7]) and row["errors"] <= 0.001 * row["sent"]
open(sys.argv[2], "a").write(json.dumps(row) + "\n")
print("ok" if row["ok"] else "over")
PY
  )
}

# The ladder (and, on the whole machine, the login storm) against the current server.
measure() {
  local name=$1 rate verdict pct
  # RATE first (the common-rate figures); then up in steps while p99 holds, or down if not.
  step "$name" "$RATE"; verdict=$VERDICT
  echo "$name: $RATE msg/s -> $verdict" >&2
  if [ "$verdict" = ok ]; then ladder="150 200 300 400 600 800 1200 1600 2400"; else ladder="50 25"; fi
  for pct in $ladder; do
    rate=$((RATE * pct / 100))
    step "$name" "$rate"; verdict=$VERDICT
    echo "$name: $rate msg/s -> $verdict" >&2
    if [ "$pct" -gt 100 ]; then [ "$verdict" = ok ] || break; else [ "$verdict" = ok ] && break; fi
  done
  [ "$PER_CORE" = 0 ] && [ "$ROOMS" = 0 ] || return 0
  # Logins per second, offered faster than any server takes them.
  local args=(run --preset login-storm --server "$ADDRS" --admin "$ADMIN" --out "$OUT/$name-logins")
  [ -n "$PROVISION" ] && args+=(--provision-command "$PROVISION")
  "$BIN/telex-loadtest" "${args[@]}" >/dev/null 2>"$OUT/$name-logins.stderr" || echo "$name: login storm failed" >&2
}

telex_ready() { until curl -fs "http://$1/readyz" >/dev/null 2>&1; do sleep 0.2; done; }

# --- Per server: start (setting ADDRS, PIDS, ADMIN, PROVISION), empty its archives, stop ---

start_telex() {
  "${PIN_SERVER[@]}" "$BIN/telexd" --data-dir "$work/telex" --client-addr 127.0.0.1:17500 --node-addr 127.0.0.1:17501 \
    --admin-addr 127.0.0.1:17502 --http-addr 127.0.0.1:17580 --xmpp-addr 127.0.0.1:17522 \
    --xmpp-tls-addr 127.0.0.1:17523 >"$work/telex.log" 2>&1 &
  pids+=($!); PIDS=$!
  pin_server "$PIDS"
  telex_ready 127.0.0.1:17580
  # Raise the per-user send limit out of the way, as the other servers' shapers are.
  "$BIN/telex" --admin 127.0.0.1:17502 tenant limits localhost --sends-per-second 100000 >/dev/null
  ADDRS=127.0.0.1:17522 ADMIN=127.0.0.1:17502 PROVISION=""
}
stop_telex() { kill "$PIDS" 2>/dev/null || true; wait "$PIDS" 2>/dev/null || true; }

start_telex_cluster() {
  # Three nodes on one core would measure contention, not a cluster.
  if [ "$PER_CORE" = 1 ]; then echo "telex-cluster is measured on the whole machine only" >&2; exit 2; fi
  export TELEX_CLUSTER_DIR="$work/cluster"
  cluster/local.sh start >/dev/null
  # Every group replicated three ways before measuring.
  until "$BIN/telex" --admin 127.0.0.1:7412 --json cluster status 2>/dev/null | python3 -c '
import json, sys
g = json.load(sys.stdin)["groups"]
sys.exit(0 if all(len(x["voters"]) == 3 and x["leader"] for x in g) else 1)'; do sleep 0.5; done
  "$BIN/telex" --admin 127.0.0.1:7412 tenant limits localhost --sends-per-second 100000 >/dev/null
  PIDS=$(cat "$work/cluster"/n{1,2,3}.pid | paste -sd,)
  ADDRS=127.0.0.1:7414,127.0.0.1:7424,127.0.0.1:7434 ADMIN=127.0.0.1:7412 PROVISION=""
}
stop_telex_cluster() { cluster/local.sh stop >/dev/null; unset TELEX_CLUSTER_DIR; }

# Prosody 0.12; with mod_mam every message is archived (internal file storage, its default).
prosody_config() {
  local mam=$1 extra_modules="" archive=""
  if [ "$mam" = 1 ]; then
    extra_modules='"mam";'
    archive='default_archive_policy = true
archive_expires_after = "never"
max_archive_query_results = 100'
  fi
  mkdir -p "$work/prosody/data/localhost/accounts"
  if [ ! -f "$work/prosody/data/localhost/accounts/lt0.dat" ]; then
    for ((u = 0; u < STORM; u++)); do
      printf 'return {\n\t["password"] = "loadtest";\n};\n' >"$work/prosody/data/localhost/accounts/lt$u.dat"
    done
  fi
  cat >"$work/prosody/prosody.cfg.lua" <<CFG
run_as_root = true
daemonize = false
pidfile = "$work/prosody/prosody.pid"
data_path = "$work/prosody/data"
log = { warn = "$work/prosody/prosody.log" }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "smacks"; "carbons"; "offline"; "posix"; $extra_modules }
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
$archive
VirtualHost "localhost"
$([ "$ROOMS" = 1 ] && printf 'Component "conference.localhost" "muc"\nmax_history_messages = 0')
CFG
}
launch_prosody() {
  "${PIN_SERVER[@]}" prosody --config "$work/prosody/prosody.cfg.lua" -F >>"$work/prosody.out" 2>&1 &
  pids+=($!); PIDS=$!
  pin_server "$PIDS"
  local up=0
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/17622) 2>/dev/null && up=1 && break; sleep 0.2; done
  if [ "$up" = 0 ]; then echo "prosody did not open its port:" >&2; tail -5 "$work/prosody.out" >&2; exit 1; fi
  ADDRS=127.0.0.1:17622 ADMIN=none PROVISION=""
}
start_prosody() { prosody_config 0; launch_prosody; }
start_prosody_mam() { prosody_config 1; launch_prosody; }
stop_prosody() { kill "$PIDS" 2>/dev/null || true; wait "$PIDS" 2>/dev/null || true; }
stop_prosody_mam() { stop_prosody; }

# ejabberd 23.01; with mod_mam every message is archived (in mnesia, its default store).
start_ejabberd_as() {
  local mam=$1
  ej="$work/ejabberd"
  rm -rf "$ej"
  mkdir -p "$ej/spool" "$ej/logs"
  cp /etc/ejabberd/inetrc "$ej/"
  local archive="" muc=""
  [ "$ROOMS" = 1 ] && muc='  mod_muc:
    host: "conference.localhost"
    max_users: 10000
    history_size: 0
    default_room_options:
      max_users: 10000'
  [ "$mam" = 1 ] && archive='  mod_mam:
    db_type: mnesia
    default: always'
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
$archive
$muc
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
  "${PIN_SERVER[@]}" $EJ start
  $EJ started
  $EJ import_piefxis "$ej/users.xml"
  PIDS=$(pgrep -f 'beam.smp.*telexlt@localhost' | head -1)
  pin_server "$PIDS"
  ADDRS=127.0.0.1:17722 ADMIN=none PROVISION=""
}
start_ejabberd() { start_ejabberd_as 0; }
start_ejabberd_mam() { start_ejabberd_as 1; }
stop_ejabberd() { $EJ stop >/dev/null 2>&1 || true; $EJ stopped >/dev/null 2>&1 || true; EJ=""; }
stop_ejabberd_mam() { stop_ejabberd; }

# Before each run: the -mam servers start from an empty archive.
empty_archives() {
  case $1 in
    ejabberd-mam) $EJ delete_old_mam_messages all 0 >/dev/null ;;
    prosody-mam)
      stop_prosody
      rm -rf "$work/prosody/data/localhost/archive"*
      launch_prosody
      ;;
  esac
}

for name in ${SERVERS//,/ }; do
  fn=${name//-/_}
  if ! declare -F "start_$fn" >/dev/null; then echo "unknown server $name" >&2; exit 2; fi
  "start_$fn"
  measure "$name"
  "stop_$fn"
done

# --- The table ---
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(. /etc/os-release && echo "$PRETTY_NAME")"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates loadtest Cargo.toml Cargo.lock || echo +changes)"
python3 - "$OUT/rows.jsonl" "$OUT" "$RATE" "$DURATION" "$P99_LIMIT_MS" "$PER_CORE" "$REPEATS" "$machine" "$commit" "$ROOMS" >"$OUT/table.md" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, rate, duration, limit = sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
per_core, repeats, machine, commit = sys.argv[6] == "1", int(sys.argv[7]), sys.argv[8], sys.argv[9]
rooms = sys.argv[10] == "1"
# The login storm runs with the chat scenario on the whole machine only.
storm = not per_core and not rooms
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
print(f"Machine: {machine}. Commit {commit}.\n")
if per_core:
    print("Per core: each server pinned to core 0 (every thread), telex-loadtest to core 1.")
else:
    print("Whole machine: servers and telex-loadtest share both cores, unpinned.")
if rooms:
    print(f"Rooms scenario (XEP-0045: 1,000 users in 10 rooms of 100; each room message reaches the 99 other occupants, "
          f"so 'delivered' is 99 times the room messages), XMPP plain c2s on loopback, {duration} s measured per run, "
          f"median of {repeats} run(s) per rung. Rates are room messages/s; CPU is per delivery.")
else:
    print(f"Chat scenario (1,000 users, 20 contacts each), XMPP plain c2s on loopback, {duration} s measured per run, "
          f"median of {repeats} run(s) per rung.")
print(f"Max sustained: the highest offered rate of the ladder (x0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24 of {rate:.0f} msg/s) with delivery")
print(f"p99 <= {limit} ms, >= 95% delivered and <= 0.1% errors. Latency, memory and CPU at {rate:.0f} msg/s: memory is the peak RSS")
print("growth during that run per connected user; CPU the server's CPU time (every thread, user + system) over the measured")
print("window only, per message delivered in it. " + ("Telex commits each room message once, to the room's log through Raft, "
      "fsynced before the ack; the peers' rooms keep no history here." if rooms else
      "Telex archives every message twice through Raft, fsynced before the ack;\nthe -mam peers archive with mod_mam; the others store nothing."))
if storm:
    print("Logins/s from the login-storm preset (5,000 logins offered at 2,000/s).")
print()
print("| server | max sustained msg/s | delivered msg/s | p50 ms | p99 ms | CPU µs per msg | server cores busy | KiB per connected user | errors |"
      + (" logins/s |" if storm else ""))
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if storm else ""))
for s in servers:
    f = fig[s]
    print(f"| {s} | {f['sustained']:.0f} | {f['delivered']:.0f} | {f['p50']:.1f} | {f['p99']:.1f} | {f['cpu_us_per_msg']:.0f} | "
          f"{f['cpu_cores']:.2f} | {f['kib_per_user']:.1f} | {f['errors']:.0f} |" + (f" {f['logins']:.0f} |" if storm else ""))
print("\nEvery rung (median p99 ms and CPU µs/msg; the runs' p99s):\n")
for s in servers:
    ladder = sorted((r for r in rows if r["server"] == s), key=lambda r: r["rate"])
    print(f"- {s}: " + "; ".join(f"{r['rate']:.0f}/s {'ok' if r['ok'] else 'over'} p99 {r['p99']:.1f} cpu {r['cpu_us_per_msg']:.0f}"
                              + (f" {r.get('p99_runs')}" if r.get('runs', 1) > 1 else "") for r in ladder))
print("\n| ratio Telex / peer | max sustained | p99 | memory/user | CPU per msg |" + (" logins/s |" if storm else ""))
print("|---|---:|---:|---:|---:|" + ("---:|" if storm else ""))
q = lambda a, b, k: a[k] / b[k] if b[k] else float("nan")
for t in [s for s in servers if s.startswith("telex")]:
    for p in [s for s in servers if not s.startswith("telex")]:
        a, b = fig[t], fig[p]
        print(f"| {t} / {p} | {q(a, b, 'sustained'):.2f} | {q(a, b, 'p99'):.2f} | {q(a, b, 'kib_per_user'):.2f} | "
              f"{q(a, b, 'cpu_us_per_msg'):.2f} |" + (f" {q(a, b, 'logins'):.2f} |" if storm else ""))
PY
cat "$OUT/table.md"
