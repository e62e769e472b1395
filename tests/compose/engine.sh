#!/usr/bin/env bash
# A Docker-API container engine on a machine without Docker: Debian's podman, serving the Docker API
# on a socket that Docker Compose v2 talks to. The compose test (tests/compose/) and `make
# compose-test` use it; so can a person (`eval "$(tests/compose/engine.sh env)"`, then docker-compose).
#
#   tests/compose/engine.sh up      packages (apt), podman's config, the API service, the healthcheck ticker
#   tests/compose/engine.sh env     the variables that point docker-compose at it
#   tests/compose/engine.sh down    stop the service and the ticker (images stay, for the next build)
#
# State (config, images, logs) lives in $FILTERVIZ_ENGINE_DIR (default ~/.cache/filterviz/engine), outside
# the checkout, so that a second run reuses the image layers of the first.
# Why each setting is what it is: tests/compose/README.md.
set -euo pipefail
DIR=${FILTERVIZ_ENGINE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/filterviz/engine}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
PACKAGES=(podman buildah runc conmon fuse-overlayfs uidmap slirp4netns catatonit netavark aardvark-dns iptables
  debootstrap)

variables() {
  cat <<EOF
export CONTAINERS_STORAGE_CONF=$DIR/conf/storage.conf CONTAINERS_CONF=$DIR/conf/containers.conf
export DOCKER_HOST=unix://$DIR/podman.sock
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false
EOF
}

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

install_packages() {
  local missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "engine: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  mkdir -p "$DIR"/{conf,storage,run,netconf,logs}
  cat >"$DIR/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$DIR/storage"
runroot = "$DIR/run"
EOF
  cat >"$DIR/conf/containers.conf" <<EOF
[containers]
# podman's root defaults (nofile 1048576) exceed this sandbox's hard limits: runc fails with EPERM.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_backend = "netavark"
network_config_dir = "$DIR/netconf"
[engine]
# crun refuses this machine's hybrid cgroup layout; runc runs.
runtime = "runc"
tmp_dir = "$DIR/run/libpod-tmp"
EOF
}

start_service() {
  eval "$(variables)"
  if ! alive podman-service; then
    rm -f "$DIR/podman.sock"
    nohup podman system service --time=0 "unix://$DIR/podman.sock" >"$DIR/logs/podman-service.log" 2>&1 &
    echo $! >"$DIR/podman-service.pid"
  fi
  for _ in $(seq 100); do
    curl -fsS --unix-socket "$DIR/podman.sock" http://d/_ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS --unix-socket "$DIR/podman.sock" http://d/_ping >/dev/null || {
    echo "engine: the podman API did not answer; see $DIR/logs/podman-service.log" >&2
    exit 1
  }
  # podman 4.3 runs HEALTHCHECKs from systemd timers, and there is no systemd here: run them ourselves.
  if ! alive healthcheck-ticker; then
    nohup "$(dirname "$0")/healthcheck-ticker.sh" 2 >"$DIR/logs/healthcheck-ticker.log" 2>&1 &
    echo $! >"$DIR/healthcheck-ticker.pid"
  fi
}

stop_service() {
  for name in healthcheck-ticker podman-service; do
    alive "$name" && kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
    rm -f "$DIR/$name.pid"
  done
}

case "${1:-}" in
  up)
    install_packages
    write_config
    start_service
    ;;
  env) variables ;;
  down) stop_service ;;
  *)
    echo "usage: $0 up|env|down" >&2
    exit 2
    ;;
esac
