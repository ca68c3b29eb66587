#!/usr/bin/env bash
# Set-up shared by the quickstart and the test suite, safe to run again:
# a running Docker daemon, a virtual environment with zenml, a Python 3.11
# parent image for zenml's base image, and zenml's images.
#
#   source scripts/setup.sh [core|dev]
#
# `core` (default) installs what launching pipelines needs; `dev` adds the
# test tools and the integration libraries the in-process tests import.
set -euo pipefail

ZENML_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${1:-core}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if [ ! -f /var/lib/apt/periodic/zenml-updated ]; then
    as_root apt-get update -qq
    as_root mkdir -p /var/lib/apt/periodic && as_root touch /var/lib/apt/periodic/zenml-updated
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then
    return
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing Docker (docker.io)"
    apt_install docker.io
  fi
  log "starting the Docker daemon (log: /tmp/zenml-dockerd.log)"
  as_root sh -c 'nohup dockerd >/tmp/zenml-dockerd.log 2>&1 &'
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  echo "the Docker daemon did not start; see /tmp/zenml-dockerd.log" >&2
  exit 1
}

pip_install() {
  # pip's own failure stops the set-up; only its noise about missing local
  # index folders is left out.
  local venv="$1"
  shift
  "$venv/bin/pip" install -q "$@" 2> >(grep -v '^WARNING: Location' >&2)
}

ensure_venv() {
  local venv="$ZENML_ROOT/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv"
  fi
  log "installing zenml ($PROFILE) into $venv"
  if [ "$PROFILE" = dev ]; then
    # The images' locks pin the test environment too, so it holds the same
    # versions (torch's CPU build included) and pip need not search.
    local constraints="$venv/zenml-constraints.txt"
    cat "$ZENML_ROOT"/images/*/requirements.lock | grep -v '^#' | sort -u >"$constraints"
    pip_install "$venv" -e "$ZENML_ROOT[dev,beam,cortex,gcp,kubernetes,pytorch]" \
      palmerpenguins httpx -c "$constraints"
  else
    pip_install "$venv" -e "$ZENML_ROOT"
  fi
  "$venv/bin/zenml" --version >/dev/null
  export PATH="$venv/bin:$PATH"
}

ensure_parent() {
  if [ -n "${ZENML_PARENT_IMAGE:-}" ]; then
    return
  fi
  if docker image inspect python:3.11-slim >/dev/null 2>&1 \
     || timeout 120 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    export ZENML_PARENT_IMAGE=python:3.11-slim
    return
  fi
  export ZENML_PARENT_IMAGE=zenml/python:3.11-bookworm
  if ! docker image inspect "$ZENML_PARENT_IMAGE" >/dev/null 2>&1; then
    log "python:3.11-slim cannot be pulled; making $ZENML_PARENT_IMAGE with debootstrap"
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    as_root env PATH="$PATH" zenml image parent --tag "$ZENML_PARENT_IMAGE"
  fi
}

ensure_compose() {
  # pytest-docker drives `docker compose`, or the v1 `docker-compose` command.
  docker compose version >/dev/null 2>&1 && return
  command -v docker-compose >/dev/null 2>&1 && return
  log "installing docker-compose"
  apt_install docker-compose
}

ensure_docker
[ "$PROFILE" = dev ] && ensure_compose
ensure_venv
ensure_parent
log "building zenml's images FROM $ZENML_PARENT_IMAGE (only what changed)"
zenml image build
