#!/bin/bash
# Re-make the captured btrfs-progs output that tests/unit/test_btrfsmap.py reads (as root;
# the images are loop-mounted with `mount -o loop`, which detaches its loop on umount).
# Each NAME gets: NAME.super (dump-super), NAME.chunk, NAME.extent (+ NAME.extent.err, its
# stderr) and NAME.dev (dump-tree -t chunk / extent / dev, --noscan), and NAME.refs: every
# tree block ("tree LOGICAL") and data extent ("data LOGICAL LENGTH") that a full
# dump-tree reaches, the oracle the map is checked against.
set -eu
out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/mnt"

files() {  # $1 mountpoint, $2 number of small files
    local mp=$1
    btrfs -q subvolume create "$mp/@home"
    btrfs -q subvolume create "$mp/@data"
    mkdir "$mp/@home/small"
    for i in $(seq 1 "$2"); do head -c $(( (i * 7919) % 6000 + 1 )) /dev/urandom > "$mp/@home/small/f$i"; done
    head -c 12M /dev/urandom > "$mp/@data/big"
    head -c 6M /dev/urandom > "$mp/@data/stale"
    sync -f "$mp"
    btrfs -q subvolume snapshot -r "$mp/@data" "$mp/@data-snap"
    rm "$mp/@data/stale"
    for i in $(seq 1 20); do yes "line $i" | head -c 100000 > "$mp/@home/z$i"; done
}

dump() {  # $1 image, $2 name
    btrfs inspect-internal dump-super "$1" > "$out/$2.super"
    btrfs inspect-internal dump-tree --noscan -t chunk "$1" > "$out/$2.chunk"
    btrfs inspect-internal dump-tree --noscan -t extent "$1" > "$out/$2.extent" 2> "$out/$2.extent.err"
    btrfs inspect-internal dump-tree --noscan -t dev "$1" > "$out/$2.dev"
    btrfs inspect-internal dump-tree --noscan --hide-names "$1" 2>/dev/null | awk '
        ($1 == "leaf" || $1 == "node") && $3 != "flags" { print "tree", $2 }
        /extent data disk byte/ && $5 != 0 { print "data", $5, $7 }' | sort -u > "$out/$2.refs"
}

make() {  # $1 name, $2 number of small files, mkfs options...
    local name=$1 count=$2 img="$work/$1.img"
    shift 2
    truncate -s 300M "$img"
    mkfs.btrfs -q -f "$@" "$img"
    mount -o loop,nodiscard,compress=zstd "$img" "$work/mnt"
    files "$work/mnt" "$count"
    umount "$work/mnt"
    dump "$img" "$name"
}

make dup 1500                 # Debian 12 defaults: DUP metadata, skinny, free-space tree
make single 300 -m single
make mixed 300 --mixed
make raid0 0 -d raid0 -m raid0   # striped on one device: the map falls back to whole chunks

# two devices: device 1's view (device 2 missing with --noscan)
truncate -s 300M "$work/two1.img" "$work/two2.img"
mkfs.btrfs -q -f -d single -m raid1 "$work/two1.img" "$work/two2.img"
dump "$work/two1.img" twodev

# a log tree not replayed: a copy of the image taken after an fsync, before unmount
truncate -s 300M "$work/log.img"
mkfs.btrfs -q -f "$work/log.img"
mount -o loop,nodiscard "$work/log.img" "$work/mnt"
files "$work/mnt" 100
sync -f "$work/mnt"
python3 -c 'import os,sys; f=open(sys.argv[1],"wb"); f.write(os.urandom(300000)); f.flush(); os.fsync(f.fileno())' "$work/mnt/@home/fsynced"
cp --sparse=always "$work/log.img" "$work/log-copy.img"
umount "$work/mnt"
dump "$work/log-copy.img" log
sed -i "s|$work/||" "$out"/*.super
