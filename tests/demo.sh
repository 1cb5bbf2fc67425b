#!/bin/sh
# make demo: the main job on embedded defaults.
#
# Until the collection daemon runs end to end, the demo shows the pieces a
# field engineer uses today: a simulated fleet's inventory and ground truth
# from metersim, and recorded meter telegrams decoded by ammctl.
set -e
B=${BUILD:-build}
V=${AMM_VECTORS:-../shared/vectors}
say() { printf '\n== %s\n' "$*"; }

say "fleet inventory of a simulated fleet (first 5 of 1,000 meters)"
"$B/metersim" export --seed 1 --count 1000 | head -6
serial=$("$B/metersim" export --seed 1 --count 1000 | sed -n 2p | cut -d, -f1)

say "what a correct head-end must store for meter $serial on 2024-01-02 (registers)"
"$B/metersim" expect --seed 1 --count 1000 --meter "$serial" \
	--from 2024-01-02T00:00:00Z --to 2024-01-03T00:00:00Z --what registers

say "a Kamstrup 382 M-Bus telegram, decoded"
"$B/ammctl" decode mbus - < "$V/mbus/frames/kamstrup_382_005.hex"
