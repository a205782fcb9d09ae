#!/usr/bin/env bash
# Debian packages the tests drive for real: ffmpeg/ffprobe (media handlers), chromium (console browser tests),
# kubectl (renders deploy/k8s with `kubectl kustomize`; Debian's kubernetes-client) and systemd-analyze (verifies
# deploy/systemd; Debian's systemd).
# Installs only what is missing; `apt-get update` runs once, and only when something must be installed.
set -euo pipefail

missing=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v chromium >/dev/null || missing+=(chromium)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
