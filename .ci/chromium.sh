#!/usr/bin/env bash
# Make sure headless Chromium is installed: the web client's browser tests
# (web/) drive it through the DevTools protocol with fake media devices.
# Idempotent and quick when it is already there: it only looks it up. Uses
# sudo only when not root; runs `apt-get update` only if a first install
# attempt fails (a fresh machine's package lists may be missing or stale).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi

install() {
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 --no-install-recommends chromium fonts-dejavu-core
}

echo "chromium.sh: installing chromium"
if ! install; then
	$sudo apt-get update
	install
fi
command -v chromium >/dev/null
echo "chromium.sh: $(command -v chromium) ready"
