#!/usr/bin/env bash
# Installs what the container test (tests/container) needs to build and run the image without a
# Docker engine: podman with the runc runtime, debootstrap for a local base image, and the pieces
# for a bridge network with published ports. Idempotent: does nothing when everything is present.
# Debian packages only, from the machine's configured apt sources; must run as root.
set -euo pipefail

packages=(podman runc debootstrap netavark aardvark-dns iptables uidmap fuse-overlayfs catatonit)
missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "container-prereqs: all present ($(podman --version))"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "container-prereqs: missing ${missing[*]} and not root: cannot install" >&2
  exit 1
fi

echo "container-prereqs: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "container-prereqs: done ($(podman --version))"
