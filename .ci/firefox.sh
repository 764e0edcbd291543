#!/usr/bin/env bash
# Make sure headless Firefox is installed: the web client's Firefox tests
# (web/firefox_test.go) drive it through WebDriver BiDi, which Firefox
# serves itself (no geckodriver), with fake media devices. Idempotent and
# quick when it is already there: it only looks it up. Uses sudo only when
# not root; runs `apt-get update` only if a first install attempt fails (a
# fresh machine's package lists may be missing or stale).
set -euo pipefail

if command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1; then
	exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi

install() {
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 --no-install-recommends firefox-esr fonts-dejavu-core
}

echo "firefox.sh: installing firefox-esr"
if ! install; then
	$sudo apt-get update
	install
fi
command -v firefox-esr >/dev/null
echo "firefox.sh: $(command -v firefox-esr) ready"
