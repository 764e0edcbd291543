#!/usr/bin/env bash
# Make sure a PostgreSQL server accepts connections at PLEXUS_TEST_POSTGRES
# (default: postgres@127.0.0.1:5432, no password). Idempotent: each step
# runs only if it is still needed, so it is cheap on a machine where
# PostgreSQL already runs.
set -euo pipefail

url="${PLEXUS_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
host=127.0.0.1
port=5432

ready() { pg_isready -q -h "$host" -p "$port"; }

# 1. Installed?
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
	echo "postgres.sh: installing PostgreSQL"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
fi

# 2. Running? Start the newest cluster's "main" if nothing answers.
if ! ready; then
	version="$(ls /etc/postgresql | sort -V | tail -n 1)"
	echo "postgres.sh: starting cluster $version/main"
	# "already running" (e.g. listening on the socket only) is not fatal
	# here; the readiness wait below decides.
	pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi

# 3. Wait until it accepts connections.
for _ in $(seq 1 60); do
	ready && break
	sleep 1
done
if ! ready; then
	echo "postgres.sh: PostgreSQL is not accepting connections on $host:$port" >&2
	exit 1
fi

# 4. Can the tests log in? A fresh Debian install asks TCP clients for a
# password; let the postgres user in from loopback without one, as the
# tests' URL expects. Only ever done on a machine where login failed.
if ! psql "$url" -qAtc 'select 1' >/dev/null 2>&1; then
	hba="$(runuser -u postgres -- psql -qAtc 'show hba_file')"
	if ! grep -q 'plexus-test' "$hba"; then
		echo "postgres.sh: allowing passwordless loopback login for postgres in $hba"
		sed -i '1i host all postgres 127.0.0.1/32 trust # plexus-test\nhost all postgres ::1/128 trust # plexus-test' "$hba"
		runuser -u postgres -- psql -qAtc 'select pg_reload_conf()' >/dev/null
	fi
	for _ in $(seq 1 10); do
		psql "$url" -qAtc 'select 1' >/dev/null 2>&1 && break
		sleep 1
	done
	if ! psql "$url" -qAtc 'select 1' >/dev/null; then
		echo "postgres.sh: cannot log in at $url" >&2
		exit 1
	fi
fi
echo "postgres.sh: PostgreSQL ready at $host:$port"
