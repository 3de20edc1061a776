#!/usr/bin/env bash
# Puts what vmsim needs on a fresh Debian/Ubuntu machine: Node.js 24 (installed from the npm
# registry into ~/.cache/vmsim-node24 when the machine's node is older), nats-server (apt),
# and the workspace's packages (npm ci). Source it to keep the PATH it sets:
#   source scripts/setup.sh        (.ci/run and scripts/demo do)
# Functions: ensure_node, ensure_nats_server, vmsim_setup.

VMSIM_NODE_MAJOR=${VMSIM_NODE_MAJOR:-24}
VMSIM_NODE_PREFIX=${VMSIM_NODE_PREFIX:-"$HOME/.cache/vmsim-node24"}

# The major version of a node binary, or 0 when there is none.
node_major() {
  local v
  v=$("${1:-node}" --version 2>/dev/null || true)
  v=${v#v}
  v=${v%%.*}
  if [[ "$v" =~ ^[0-9]+$ ]]; then echo "$v"; else echo 0; fi
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    echo "need root (or sudo) to run: $*" >&2
    return 1
  fi
}

ensure_node() {
  local bin="$VMSIM_NODE_PREFIX/node_modules/.bin" have
  have=$(node_major node)
  if [[ $have -ge $VMSIM_NODE_MAJOR ]]; then
    echo "using node $(node --version) at $(command -v node)"
    return 0
  fi
  echo "node on PATH is ${have/#0/missing} (< v$VMSIM_NODE_MAJOR)"
  if [[ -x "$bin/node" && $(node_major "$bin/node") -eq $VMSIM_NODE_MAJOR ]]; then
    echo "reusing Node $VMSIM_NODE_MAJOR in $VMSIM_NODE_PREFIX"
  else
    if ! command -v npm >/dev/null 2>&1; then
      echo "npm is needed to install Node $VMSIM_NODE_MAJOR; install Node $VMSIM_NODE_MAJOR yourself first" >&2
      return 1
    fi
    echo "installing node@$VMSIM_NODE_MAJOR into $VMSIM_NODE_PREFIX"
    mkdir -p "$VMSIM_NODE_PREFIX" || return 1
    npm install --prefix "$VMSIM_NODE_PREFIX" --no-fund --no-audit "node@$VMSIM_NODE_MAJOR" || return 1
  fi
  export PATH="$bin:$PATH"
  hash -r
  if [[ $(node_major node) -ne $VMSIM_NODE_MAJOR ]]; then
    echo "failed to provide Node $VMSIM_NODE_MAJOR (node on PATH: $(node --version 2>/dev/null || echo none))" >&2
    return 1
  fi
  echo "using node $(node --version) at $(command -v node)"
}

ensure_nats_server() {
  if ! command -v nats-server >/dev/null 2>&1; then
    if [[ ! -x /usr/sbin/nats-server ]]; then
      echo "nats-server not found; installing it with apt-get"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update || return 1
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server || return 1
    fi
    [[ -x /usr/sbin/nats-server ]] && export PATH="$PATH:/usr/sbin" && hash -r
    if ! command -v nats-server >/dev/null 2>&1; then
      echo "nats-server is still not on PATH after installing it" >&2
      return 1
    fi
  fi
  echo "using $(nats-server --version 2>&1) at $(command -v nats-server)"
}

vmsim_setup() {
  ensure_node || return 1
  ensure_nats_server || return 1
  npm ci --no-fund --no-audit || return 1
}
