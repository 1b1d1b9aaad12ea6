#!/usr/bin/env bash
# Telex side by side with Prosody (and ejabberd, when it can be started): the same XMPP
# scenario against each server on loopback, plain c2s, rate limits off, the same users.
# Installs the servers from Debian's packages when missing (without starting their services).
#
#   loadtest/compare.sh [RATE] [DURATION]     # defaults: 1000 msg/s, 10 s; chat preset users
#
# Writes loadtest-compare/<server>/ (each run's report) and loadtest-compare/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-1000}"
DURATION="${2:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/telex-target}"
BIN="$CARGO_TARGET_DIR/release"
OUT="$PWD/loadtest-compare"
USERS=1000
STORM=5000   # accounts for the login storm (lt0 .. lt4999)
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$work" 2>/dev/null || true; }
trap cleanup EXIT

sudo=""; if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! command -v prosody >/dev/null 2>&1; then
  echo "installing prosody" >&2
  # No service start during the install: each server runs here with its own config.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prosody >&2
  $sudo rm -f /usr/sbin/policy-rc.d
fi
cargo build --release --bins -q

# CPU seconds (user + system) of a process so far.
cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

# Runs the scenario against SERVER at ADDR whose process is PID; ADMIN provisions or "none".
measure() {
  local name=$1 addr=$2 pid=$3 admin=$4
  local rss0 cpu0 rss1 cpu1
  rss0=$(rss_kib "$pid"); cpu0=$(cpu "$pid")
  # Memory is sampled while the users are connected (the tool holds them until it ends).
  ( peak=0; while kill -0 "$pid" 2>/dev/null; do r=$(rss_kib "$pid"); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$work/$name.peak"; sleep 0.5; done ) &
  local sampler=$!
  "$BIN/telex-loadtest" run --preset chat --rate "$RATE" --duration "$DURATION" --server "$addr" --admin "$admin" \
    --out "$OUT/$name" --history /dev/null >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" || {
      echo "$name: run failed:"; tail -5 "$OUT/$name.stderr"; kill "$sampler"; return 1; }
  kill "$sampler" 2>/dev/null || true
  cpu1=$(cpu "$pid"); rss1=$(cat "$work/$name.peak" 2>/dev/null || rss_kib "$pid")
  # Logins per second, offered faster than any server takes them.
  "$BIN/telex-loadtest" run --preset login-storm --server "$addr" --admin "$admin" \
    --out "$OUT/$name-logins" >/dev/null 2>"$OUT/$name-logins.stderr" || echo "$name: login storm failed" >&2
  python3 - "$OUT/$name/result.json" "$name" "$rss0" "$rss1" "$cpu0" "$cpu1" "$USERS" >>"$work/rows" <<'PY'
import json, sys, os
r = json.load(open(sys.argv[1]))["summary"]
storm = os.path.join(os.path.dirname(sys.argv[1]) + "-logins", "result.json")
logins = json.load(open(storm))["summary"]["logins_per_sec"] if os.path.exists(storm) else float("nan")
name, rss0, rss1, cpu0, cpu1, users = sys.argv[2], *map(float, sys.argv[3:8])
msgs = r["sent_per_sec"] * float(json.load(open(sys.argv[1]))["scenario"]["duration_secs"])
print(json.dumps({"server": name, "delivered": r["delivered_per_sec"], "p50": r["delivery_p50_ms"],
  "p99": r["delivery_p99_ms"], "logins": logins, "kib_per_user": (rss1 - rss0) / users,
  "cpu_per_1000": (cpu1 - cpu0) / max(msgs, 1) * 1000, "errors": sum(r["errors"].values())}))
PY
}

# --- Telex, one node ---
"$BIN/telexd" --data-dir "$work/telex" --client-addr 127.0.0.1:17500 --node-addr 127.0.0.1:17501 \
  --admin-addr 127.0.0.1:17502 --http-addr 127.0.0.1:17580 --xmpp-addr 127.0.0.1:17522 \
  --xmpp-tls-addr 127.0.0.1:17523 >"$work/telex.log" 2>&1 &
pids+=($!); telex=$!
until curl -fs http://127.0.0.1:17580/readyz >/dev/null 2>&1; do sleep 0.2; done
# Raise the per-user send limit out of the way, as the other servers' shapers are.
"$BIN/telex" --admin 127.0.0.1:17502 tenant limits localhost --sends-per-second 100000 >/dev/null
measure telex 127.0.0.1:17522 "$telex" 127.0.0.1:17502

# --- Prosody 0.12 ---
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
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "smacks"; "carbons"; "posix" }
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

# --- The table ---
python3 - "$work/rows" "$RATE" "$DURATION" >"$OUT/table.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = next(r for r in rows if r["server"] == "telex")
print(f"Chat preset (1,000 users, 20 contacts each), {sys.argv[2]} msg/s offered for {sys.argv[3]} s, XMPP plain c2s on loopback;")
print("logins/s from the login-storm preset (5,000 logins offered at 2,000/s). Memory: peak RSS growth during the chat run")
print("per connected user; CPU: the server's CPU seconds over the chat run (logins included) per 1,000 messages.\n")
print("| server | delivered msg/s | p50 ms | p99 ms | logins/s | KiB per connected user | CPU s per 1,000 msgs | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['server']} | {r['delivered']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['logins']:.0f} | {r['kib_per_user']:.1f} | {r['cpu_per_1000']:.3f} | {r['errors']} |")
print("\n| ratio Telex / peer | delivered | p50 | p99 | logins/s | memory/user | CPU/1,000 msgs |\n|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r["server"] == "telex":
        continue
    q = lambda k: t[k] / r[k] if r[k] else float("nan")
    print(f"| telex / {r['server']} | {q('delivered'):.2f} | {q('p50'):.2f} | {q('p99'):.2f} | {q('logins'):.2f} | {q('kib_per_user'):.2f} | {q('cpu_per_1000'):.2f} |")
PY
cat "$OUT/table.md"
