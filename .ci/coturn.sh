#!/usr/bin/env bash
# Make sure coturn's tools are installed: turnutils_uclient drives the TURN
# relay's interop test (and benchmark), turnserver is the benchmark's
# reference server. Idempotent and quick when they are already there: it
# only looks them up. Uses sudo only when not root; runs `apt-get update`
# only if a first install attempt fails (a fresh machine's package lists
# may be missing or stale).
#
# The Debian package does not start a turnserver in a container without
# systemd; the tests and benchmarks start their own on free loopback ports.
set -euo pipefail

if command -v turnutils_uclient >/dev/null 2>&1 && command -v turnserver >/dev/null 2>&1; then
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi

install() {
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends coturn
}

echo "coturn.sh: installing coturn (turnutils_uclient, turnserver)"
if ! install; then
	$sudo apt-get update
	install
fi
command -v turnutils_uclient >/dev/null
echo "coturn.sh: $(command -v turnutils_uclient) ready"
