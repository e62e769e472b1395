#!/bin/sh
# Runs every running container's HEALTHCHECK every $1 seconds (podman 4.3 leaves that to systemd
# timers, and there is no systemd here). Started and stopped by engine.sh, with its environment.
while :; do
  for container in $(podman ps -q --filter status=running); do
    podman healthcheck run "$container" >/dev/null 2>&1 || true
  done
  sleep "${1:-2}"
done
