# tests/integration/gprs_lib.sh: the set-up the GPRS tests share
# (t_gprs_collect.sh, t_gprs_commands.sh, t_push_session.sh), sourced after
# lib.sh with N, SEED, DAYS and CONC set.  Sourcing it checks that ammd and
# metersim are built (METERSIM, AMMD: defaults under $BUILD), sources
# collect.sh and makes the scratch directory $work, removed at exit.
#
#   gprs_fleet_export        fleet, BASE; $work/in.csv (the meters as GPRS
#                            modules that connect in), $work/tcp.csv (as
#                            TCP/IP meters listening from BASE)
#   gprs_inventory NAME      from $work/m.csv: S (serials), SEC (security);
#                            dsn, a new database NAME, migrated, m.csv in it
#   gprs_conf LINE...        LPORT; ammd.conf with a [gprs] section that
#                            listens on LPORT, then the given lines
#   gprs_mqtt_conf CLIENT    a [mqtt] section: JSON under $PREFIX to the
#                            test's broker, client id CLIENT
METERSIM=${METERSIM:-$BUILD/metersim}
AMMD=${AMMD:-$BUILD/ammd}
[ -x "$METERSIM" ] && [ -x "$AMMD" ] || fail "build ammd and metersim first"
. "$(dirname "${BASH_SOURCE[0]}")/collect.sh"

work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"

gprs_fleet_export() {
	fleet=(--count "$N" --seed "$SEED")
	BASE=$(port_block "$N")
	"$METERSIM" export "${fleet[@]}" --transport gprs >"$work/in.csv" || fail "metersim export"
	"$METERSIM" export "${fleet[@]}" --base-port "$BASE" >"$work/tcp.csv" || fail "metersim export"
}

gprs_inventory() { # NAME
	mapfile -t S < <(tail -n +2 "$work/m.csv" | cut -d, -f1)
	mapfile -t SEC < <(tail -n +2 "$work/m.csv" | cut -d, -f9)
	dsn=$(pg_newdb "$1")
	"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
	"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || fail "import"
}

gprs_conf() { # LINE...: the [gprs] settings besides listen
	LPORT=$(free_port)
	conf "$dsn"
	{
		echo "[gprs]"
		echo "listen = 127.0.0.1:$LPORT"
		printf '%s\n' "$@"
	} >>"$work/ammd.conf"
}

gprs_mqtt_conf() { # CLIENT_ID
	cat >>"$work/ammd.conf" <<EOC
[mqtt]
enabled = yes
host = 127.0.0.1
port = $MQTT_PORT
prefix = $PREFIX
format = json
client_id = $1
EOC
}
