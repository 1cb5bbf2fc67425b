#!/bin/bash
# t_install.sh: `make install DESTDIR=... PREFIX=/usr` lays out a working
# installation.
#
# Installs the already built tree into a scratch DESTDIR (make -o all: the
# build is the caller's business, and in a tree being edited a rebuild here
# would test someone else's half-written file), then checks that every part
# is where the unit and the man page say it is, with sane modes:
#   * ammd in PREFIX/sbin, ammctl in PREFIX/bin, both running (-V, help);
#   * the migrations in PREFIX/share/ammd/sql, the same files as sql/, and
#     `ammctl db migrate --sql-dir` applies them to an empty database;
#   * the unit with @PREFIX@ replaced (ExecStart=/usr/sbin/ammd), the
#     tmpfiles snippet, the example configuration (0640) and ammd(8),
#     which man renders;
#   * `ammd -n` accepts the installed example configuration and refuses a
#     copy with a typo in a key.
. "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build}
AMMCTL=${AMMCTL:-$BUILD/ammctl}
[ -x "$BUILD/ammd" ] && [ -x "$BUILD/ammctl" ] || fail "build ammd and ammctl first"

d=$(mktemp -d)
lib_cleanup_add rm -rf "$d"
out=$(make -C "$root" --no-print-directory -o all install B="$BUILD" DESTDIR="$d" PREFIX=/usr 2>&1) ||
	fail "make install: $out"
ok "make install DESTDIR=$d PREFIX=/usr"

mode() { stat -c %a "$1"; }
for f in usr/sbin/ammd usr/bin/ammctl; do
	[ -f "$d/$f" ] || fail "$f not installed"
	expect_eq "$f installed executable" "755" "$(mode "$d/$f")"
done
expect_match "installed ammd runs" "^ammd " "$("$d/usr/sbin/ammd" -V)"
expect_status "installed ammctl runs" 0 "$d/usr/bin/ammctl" help

# the migrations: the same files, and they apply
expect_eq "every migration installed" "$(cd "$root/sql" && ls *.sql | tr '\n' ' ')" \
	"$(cd "$d/usr/share/ammd/sql" && ls *.sql | tr '\n' ' ')"
for f in "$root"/sql/*.sql; do
	cmp -s "$f" "$d/usr/share/ammd/sql/${f##*/}" || fail "${f##*/} differs from the source"
done
ok "installed migrations equal sql/"
[ -n "${PG_SUPER_DSN:-}" ] || pg_start
dsn=$(pg_newdb amm_install)
"$d/usr/bin/ammctl" db migrate --dsn "$dsn" --sql-dir "$d/usr/share/ammd/sql" >/dev/null ||
	fail "ammctl db migrate from the installed sql"
expect_eq "installed migrations apply" "$(ls "$root"/sql/*.sql | wc -l)" \
	"$(q "$dsn" "SELECT count(*) FROM schema_migrations")"

# systemd, tmpfiles, configuration, man page
unit=$d/lib/systemd/system/ammd.service
[ -f "$unit" ] || fail "no unit installed"
expect_match "unit: ExecStart under PREFIX" "^ExecStart=/usr/sbin/ammd -f /etc/ammd/ammd.conf$" "$(cat "$unit")"
expect_match "unit: config checked before start" "^ExecStartPre=/usr/sbin/ammd -n " "$(cat "$unit")"
expect_eq "unit: no @PREFIX@ left" "0" "$(grep -c '@PREFIX@' "$unit")"
expect_match "unit: Type=notify" "^Type=notify$" "$(cat "$unit")"
expect_match "tmpfiles snippet installed" "/var/lib/ammd" "$(cat "$d/usr/lib/tmpfiles.d/ammd.conf")"
conf=$d/etc/ammd/ammd.conf.example
expect_eq "example configuration 0640" "640" "$(mode "$conf")"
[ -f "$d/usr/share/man/man8/ammd.8" ] || fail "ammd(8) not installed"
expect_match "ammd(8) renders" "ammd" "$(MANWIDTH=80 man -l "$d/usr/share/man/man8/ammd.8" 2>/dev/null | head -20)"
for f in "$root"/daemon/*.1; do
	[ -e "$f" ] || continue
	[ -f "$d/usr/share/man/man1/${f##*/}" ] || fail "${f##*/} not installed"
	ok "${f##*/} installed"
done

# ammd -n on the installed example, and on a broken copy
out=$("$d/usr/sbin/ammd" -n -f "$conf" 2>&1)
rc=$?
expect_eq "ammd -n accepts the installed example" "0" "$rc"
expect_match "ammd -n says so" "configuration OK" "$out"
sed 's/^batch_rows = /batch_rowz = /' "$conf" >"$d/broken.conf"
grep -q batch_rowz "$d/broken.conf" || fail "could not break the copy"
expect_status "ammd -n refuses an unknown key" 1 "$d/usr/sbin/ammd" -n -f "$d/broken.conf"
