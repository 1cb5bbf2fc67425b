#!/bin/bash
# t_meter_import.sh: `ammctl meter import|add|list|show|disable|enable`
# against a real database: a generated 1,000-meter CSV imports, imports
# again without duplicates, a changed line updates exactly one meter, a file
# with one bad line imports nothing and names the line, and list/show print
# what was imported.
. "$(dirname "$0")/lib.sh"

dsn=$(pg_newdb amm_import)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
export AMMD_DB=$dsn
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"

# gen N: N meters of every transport; every third meter with HLS keys.
gen() {
	awk -v n="$1" 'BEGIN {
		print "serial,type,transport,host,port,hdlc,client_addr,server_addr,security,ek,ak,password,system_title,profile_period,gateway,primary_addr,secondary_addr"
		split("162 282 382M", ty, " ")
		for (i = 1; i <= n; i++) {
			s = sprintf("KAM%08d", i); t = ty[i % 3 + 1]
			sec = "none"; ek = ""; ak = ""; pw = ""; st = ""
			if (i % 3 == 0) { sec = "hls-gmac"; ek = sprintf("%032x", i); ak = sprintf("%032x", i + 7); st = sprintf("4b414d%010x", i) }
			else if (i % 7 == 0) { sec = "lls"; pw = "pw" i }
			if (i % 10 == 0)
				printf "%s,%s,mbus,,,,,,%s,%s,%s,%s,%s,3600,10.9.0.%d:10001,%d,\n", s, t, sec, ek, ak, pw, st, int(i / 10) % 5 + 1, i % 250 + 1
			else if (i % 10 == 1)
				printf "%s,%s,modbus,,,,,,%s,%s,%s,%s,%s,900,10.8.0.1:502,%d,\n", s, t, sec, ek, ak, pw, st, i % 247 + 1
			else if (i % 10 == 2)
				printf "%s,%s,gprs,,,1,16,%d,%s,%s,%s,%s,%s,,,,\n", s, t, i % 16000 + 1, sec, ek, ak, pw, st
			else
				printf "%s,%s,tcpip,10.%d.%d.%d,4059,0,16,1,%s,%s,%s,%s,%s,900,,,\n", s, t, int(i / 65536) % 256, int(i / 256) % 256, i % 256, sec, ek, ak, pw, st
		}
	}'
}
gen 1000 >"$work/m.csv"

out=$("$AMMCTL" meter import "$work/m.csv") || fail "import: $out"
expect_eq "first import adds 1,000" "1000 meters read: 1000 added, 0 updated, 0 unchanged; keys set for 428" "$out"
expect_eq "1,000 meters stored" "1000" "$(q "$dsn" 'SELECT count(*) FROM meter')"
expect_eq "gateways created once each" "6" "$(q "$dsn" 'SELECT count(*) FROM gateway')"
expect_eq "gateway kinds" "mbus:5,modbus:1" "$(q "$dsn" "SELECT string_agg(kind || ':' || n, ',' ORDER BY kind) FROM (SELECT kind, count(*) n FROM gateway GROUP BY kind) g")"
expect_eq "hls keys stored as bytes" "\\x00000000000000000000000000000003|\\x0000000000000000000000000000000a|\\x4b414d0000000003" \
	"$(q "$dsn" "SELECT k.ek, k.ak, k.system_title FROM meter_key k JOIN meter m ON m.id = k.meter_id WHERE m.serial = 'KAM00000003'")"
expect_eq "a row reads back field by field" "KAM00000010|282|mbus||||16|1|none|3600|10.9.0.2:10001|11|" \
	"$(q "$dsn" "SELECT m.serial, m.type, m.transport, m.host, m.port, CASE WHEN m.hdlc THEN 't' END, m.client_addr, m.server_addr, m.security, m.profile_period, g.name, m.primary_addr, m.secondary_addr FROM meter m LEFT JOIN gateway g ON g.id = m.gateway_id WHERE serial = 'KAM00000010'")"
expect_eq "defaults: tcpip port 4059, gprs 900 s" "4059|900" \
	"$(q "$dsn" "SELECT (SELECT port FROM meter WHERE serial = 'KAM00000004'), (SELECT profile_period FROM meter WHERE serial = 'KAM00000002')")"

ids=$(q "$dsn" "SELECT sum(id) FROM meter")
out=$("$AMMCTL" meter import "$work/m.csv") || fail "re-import: $out"
expect_eq "second import changes nothing" "1000 meters read: 0 added, 0 updated, 1000 unchanged; keys set for 0" "$out"
expect_eq "still 1,000 meters, same ids" "1000 $ids" "$(q "$dsn" 'SELECT count(*) || $$ $$ || sum(id) FROM meter')"

sed 's/^KAM00000004,\(.*\),10\.0\.0\.4,/KAM00000004,\1,10.99.0.4,/' "$work/m.csv" >"$work/m2.csv"
out=$("$AMMCTL" meter import "$work/m2.csv") || fail "import of a changed file: $out"
expect_eq "a changed line updates one meter" "1000 meters read: 0 added, 1 updated, 999 unchanged; keys set for 0" "$out"
expect_eq "... to the new host" "10.99.0.4" "$(q "$dsn" "SELECT host FROM meter WHERE serial = 'KAM00000004'")"

# A bad line anywhere: nothing at all is imported, and the line is named.
gen 1200 | awk -F, -v OFS=, 'NR == 502 { $5 = "70000" } { print }' >"$work/bad.csv"
out=$("$AMMCTL" meter import "$work/bad.csv" 2>&1)
expect_eq "bad file: exit 1" "1" "$?"
expect_match "bad file: names line 502 and the field" "^line 502: port '70000'" "$out"
expect_match "bad file: says nothing was imported" "1 bad line, nothing imported" "$out"
expect_eq "bad file: none of its 200 new meters arrived" "1000" "$(q "$dsn" 'SELECT count(*) FROM meter')"
expect_eq "bad file: the changed host was not reverted either" "10.99.0.4" "$(q "$dsn" "SELECT host FROM meter WHERE serial = 'KAM00000004'")"
printf 'serial,transport,host\nA1,tcpip,h\nA2,tcpip,h\nA1,tcpip,h2\n' >"$work/dup.csv"
out=$("$AMMCTL" meter import "$work/dup.csv" 2>&1)
expect_match "a serial twice in one file is refused with both lines" "line 2: serial A1 appears on lines 2, 4" "$out"
printf 'serial,transport,host,colour\nA1,tcpip,h,red\n' >"$work/col.csv"
out=$("$AMMCTL" meter import "$work/col.csv" 2>&1)
expect_match "an unknown column is refused" "unknown column 'colour'" "$out"
printf 'serial,transport,host,ek\nA1,tcpip,h,00\n' >"$work/keys.csv"
out=$("$AMMCTL" meter import "$work/keys.csv" 2>&1)
expect_match "key columns come as a group" "all or none" "$out"
printf 'serial,transport,host,security,ek,ak,password,system_title\n"Q,1",tcpip,h,none,,,,\nQ2,tcpip,"h",lls,,,"a,""b""",\nQ3,mbus,,none,,,,\n' >"$work/quote.csv"
out=$("$AMMCTL" meter import "$work/quote.csv" 2>&1)
expect_match "quoted comma in a serial is still a bad serial" "line 2: serial 'Q,1'" "$out"
expect_match "mbus without a gateway is refused" "line 4: transport mbus needs a gateway" "$out"
expect_eq "nothing from that file" "0" "$(q "$dsn" "SELECT count(*) FROM meter WHERE serial LIKE 'Q%'")"
printf 'serial,transport,host,security,ek,ak,password,system_title\r\n# a comment\r\n\r\nQ2,tcpip,"h",lls,,,"a,""b""",\r\n' >"$work/q2.csv"
out=$("$AMMCTL" meter import - <"$work/q2.csv" 2>&1) || fail "CRLF/quoted import from stdin: $out"
expect_eq "CRLF, comments and quotes, from stdin" "a,\"b\"" \
	"$(q "$dsn" "SELECT k.password FROM meter_key k JOIN meter m ON m.id = k.meter_id WHERE serial = 'Q2'")"
printf 'serial,transport,host,security,ek,ak,password,system_title\nQ4,tcpip,h,lls,,,x\\y\tz\\N,\n' >"$work/q4.csv"
out=$("$AMMCTL" meter import "$work/q4.csv" 2>&1) || fail "backslash/tab import: $out"
expect_eq "backslashes and tabs reach the database as written (COPY escaping)" "t" \
	"$(q "$dsn" "SELECT k.password = E'x\\\\y\\tz\\\\N' FROM meter_key k JOIN meter m ON m.id = k.meter_id WHERE serial = 'Q4'")"
expect_status "import of a missing file exits 1" 1 "$AMMCTL" meter import "$work/nonexistent.csv"
expect_status "import without a file exits 2" 2 "$AMMCTL" meter import

# add
expect_status "add a new meter" 0 "$AMMCTL" meter add X1 transport=tcpip host=192.0.2.1 port=4060 type=382M hdlc=1 profile_period=300
expect_status "add an existing meter is refused" 1 "$AMMCTL" meter add X1 transport=tcpip host=192.0.2.1
expect_status "add with an unknown key is a usage error" 2 "$AMMCTL" meter add X2 transport=tcpip colour=red
expect_status "add with a bad value fails" 1 "$AMMCTL" meter add X2 transport=tcpip host=h security=hls-gmac

# list and show
out=$("$AMMCTL" meter list)
expect_eq "list: a header, a line per meter, a count" "1005" "$(echo "$out" | wc -l)"
expect_eq "list: count line" "1003 meters" "$(echo "$out" | tail -1)"
expect_match "list: a tcpip meter's line" "^X1 +382M +tcpip +192\.0\.2\.1:4060 +none +300 yes +unknown +never$" "$out"
expect_match "list: an mbus meter's line" "^KAM00000010 +282 +mbus +10\.9\.0\.2:10001/11 +none +3600 yes" "$out"
out=$("$AMMCTL" meter list --json)
expect_eq "list --json: every meter, and X1's fields" "1003 X1 382M tcpip 192.0.2.1:4060 300 True None" \
	"$(echo "$out" | python3 -c 'import json,sys
a = json.load(sys.stdin); x = [m for m in a if m["serial"] == "X1"][0]
print(len(a), x["serial"], x["type"], x["transport"], x["address"], x["profile_period"], x["enabled"], x["last_contact"])')"
out=$("$AMMCTL" meter show KAM00000003)
expect_match "show: transport" "^transport +tcpip$" "$out"
expect_match "show: keys set, no secrets printed" "^keys_set +yes$" "$out"
expect_match "show: system title" "^system_title +4b414d0000000003$" "$out"
case "$out" in *00000000000000000000000000000003*) fail "show printed a key";; esac
ok "show: the key itself is not printed"
out=$("$AMMCTL" meter show --json KAM00000010)
expect_eq "show --json: gateway meter" "KAM00000010 mbus 10.9.0.2:10001 mbus 11 None False []" \
	"$(echo "$out" | python3 -c 'import json,sys
m = json.load(sys.stdin)
print(m["serial"], m["transport"], m["gateway"], m["gateway_kind"], m["primary_addr"], m["host"], m["keys_set"], m["read_pointers"])')"
expect_status "show of an unknown meter exits 1" 1 "$AMMCTL" meter show NOPE

# disable / enable
expect_status "disable" 0 "$AMMCTL" meter disable KAM00000004
expect_eq "disabled" "f" "$(q "$dsn" "SELECT enabled FROM meter WHERE serial = 'KAM00000004'")"
"$AMMCTL" meter import "$work/m2.csv" >/dev/null || fail "re-import"
expect_eq "re-import leaves a disabled meter disabled" "f" "$(q "$dsn" "SELECT enabled FROM meter WHERE serial = 'KAM00000004'")"
expect_status "enable" 0 "$AMMCTL" meter enable KAM00000004
expect_eq "enabled" "t" "$(q "$dsn" "SELECT enabled FROM meter WHERE serial = 'KAM00000004'")"
expect_status "disable of an unknown meter exits 1" 1 "$AMMCTL" meter disable NOPE
exit 0
