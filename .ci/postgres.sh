# Sourced by .ci/run: starts a private PostgreSQL cluster on 127.0.0.1 and exports its URL.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/scar-pg.XXXXXX)
# A free port, so several test runs on one machine do not collide.
pg_port=${SCAR_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
chown postgres "$pg_dir" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
as_pg "$pg_bin/initdb -D $pg_dir/data -U scar --auth=trust >/dev/null"
as_pg "$pg_bin/pg_ctl -D $pg_dir/data -o '-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir' -l $pg_dir/log -w start >/dev/null"
as_pg "$pg_bin/createdb -h 127.0.0.1 -p $pg_port -U scar scar_test"
export SCAR_TEST_POSTGRES_URL="postgresql+psycopg://scar@127.0.0.1:$pg_port/scar_test"
trap 'as_pg "$pg_bin/pg_ctl -D $pg_dir/data -m fast stop >/dev/null" || true; rm -rf "$pg_dir"' EXIT
echo "PostgreSQL for tests at $SCAR_TEST_POSTGRES_URL"
