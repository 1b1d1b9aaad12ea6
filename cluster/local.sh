#!/usr/bin/env bash
# A 3-node Telex cluster on this machine, for trying things out.
#
#   cluster/local.sh start     build, then start nodes 1-3 (node 1 first; 2 and 3 join it)
#   cluster/local.sh status    `telex cluster status` as node 1 sees it
#   cluster/local.sh stop      SIGTERM every node
#   cluster/local.sh kill N    kill -9 node N (try it, then `status` from another node)
#   cluster/local.sh restart N start node N again on its data directory
#   cluster/local.sh clean     stop every node and delete the cluster's data
#
# Node N listens on 127.0.0.1: client 74N0, node 74N1, admin 74N2, http 74N3 (node 1: 7410-7413),
# keeps its data in ${TELEX_CLUSTER_DIR:-./telex-cluster}/nN and logs to .../nN.log.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/telex-target}"
BIN="$CARGO_TARGET_DIR/release"
DIR="${TELEX_CLUSTER_DIR:-./telex-cluster}"
SHARDS="${TELEX_SHARDS:-16}"

port() { echo "74$1$2"; }

# The super-admin token node 1 wrote on its first start (the admin API wants one).
admin_token() { cat "$DIR/n1/admin-token" 2>/dev/null || true; }

launch_node() {
  local n=$1
  mkdir -p "$DIR"
  local join=()
  # A node with an empty data directory joins node 1; node 1 (or any node restarting) does not.
  if [ "$n" != 1 ] && [ ! -d "$DIR/n$n" ]; then join=(--join "127.0.0.1:$(port 1 1)"); fi
  "$BIN/telexd" --node-id "$n" --data-dir "$DIR/n$n" --shards "$SHARDS" \
    --client-addr "127.0.0.1:$(port "$n" 0)" --node-addr "127.0.0.1:$(port "$n" 1)" \
    --admin-addr "127.0.0.1:$(port "$n" 2)" --http-addr "127.0.0.1:$(port "$n" 3)" \
    --xmpp-addr "127.0.0.1:$(port "$n" 4)" --xmpp-tls-addr "127.0.0.1:$(port "$n" 5)" \
    "${join[@]}" >>"$DIR/n$n.log" 2>&1 &
  echo $! >"$DIR/n$n.pid"
}

# Waits until node N says it is ready (a restarted node needs a majority of its peers up).
wait_ready() {
  local n=$1
  for _ in $(seq 1 300); do
    if curl -fs "http://127.0.0.1:$(port "$n" 3)/readyz" >/dev/null 2>&1; then
      echo "node $n ready: client 127.0.0.1:$(port "$n" 0), admin 127.0.0.1:$(port "$n" 2), xmpp 127.0.0.1:$(port "$n" 4)"
      return
    fi
    sleep 0.2
  done
  echo "node $n did not become ready; see $DIR/n$n.log" >&2
  exit 1
}

case "${1:-}" in
  start)
    make --no-print-directory build >/dev/null
    if [ -d "$DIR/n1" ]; then
      # A cluster that ran before: all at once, since a node is ready only with a majority up.
      for n in 1 2 3; do launch_node "$n"; done
      for n in 1 2 3; do wait_ready "$n"; done
    else
      # A new cluster: node 1 first, then each new node joins it in turn.
      for n in 1 2 3; do launch_node "$n"; wait_ready "$n"; done
    fi
    echo "try: export TELEX_ADMIN_TOKEN=\$(cat $DIR/n1/admin-token)"
    echo "     $BIN/telex --admin 127.0.0.1:$(port 1 2) cluster status"
    ;;
  status) TELEX_ADMIN_TOKEN="${TELEX_ADMIN_TOKEN:-$(admin_token)}" "$BIN/telex" --admin "127.0.0.1:$(port "${2:-1}" 2)" cluster status ;;
  stop)
    for n in 1 2 3; do
      [ -f "$DIR/n$n.pid" ] && kill "$(cat "$DIR/n$n.pid")" 2>/dev/null || true
      rm -f "$DIR/n$n.pid"
    done
    ;;
  kill) kill -9 "$(cat "$DIR/n$2.pid")" && rm -f "$DIR/n$2.pid" && echo "node $2 killed" ;;
  restart) launch_node "$2"; wait_ready "$2" ;;
  clean)
    "$0" stop
    rm -rf "$DIR"
    echo "removed $DIR"
    ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac
