#!/usr/bin/env bash
# Make sure Node.js and npm are installed and the cable package's test
# harness (signalling/internal/cable/testdata/node) has its pinned packages
# (@rails/actioncable, ws). Idempotent and quick when nothing is to do:
# npm ci runs only when node_modules is missing or older than the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

harness=signalling/internal/cable/testdata/node
sudo=""
if [ "$(id -u)" != 0 ]; then
	sudo=sudo
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "node.sh: installing nodejs and npm"
	if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; then
		$sudo apt-get update
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
	fi
fi

# The stamp is the lock that node_modules was installed from.
stamp="$harness/node_modules/.plexus-lock.json"
if ! cmp -s "$harness/package-lock.json" "$stamp"; then
	echo "node.sh: npm ci in $harness"
	(cd "$harness" && npm ci --no-audit --no-fund --loglevel=error)
	cp "$harness/package-lock.json" "$stamp"
fi
