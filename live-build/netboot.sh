#!/bin/bash
# `make netboot`: what a PXE/HTTP boot server needs to start the appliance on a room of PCs,
# taken from the built ISO (docs/netboot.md says how to serve it).
#
#   make netboot NETBOOT_URL=http://10.0.0.5/appliance \
#       NETBOOT_JOB="appliance.job=restore appliance.repo=http://10.0.0.5/images/ \
#                    appliance.image=lab-2026 appliance.target=internal appliance.then=poweroff"
#
# makes build/netboot/ (NETBOOT_OUT), one folder that both the TFTP server and the web server
# serve (the web server at NETBOOT_URL):
#   live/vmlinuz live/initrd.img live/filesystem.squashfs   the ISO's own (HTTP)
#   boot.ipxe                     iPXE script: kernel and initrd over HTTP, the job
#   undionly.kpxe ipxe.efi        Debian's iPXE (package ipxe): BIOS PXE / UEFI, no Secure Boot
#   shimx64.efi grubx64.efi grub/grub.cfg   UEFI with Secure Boot: Debian's signed shim and
#                                 signed network GRUB (shim-signed, grub-efi-amd64-signed);
#                                 GRUB takes the kernel and initrd over TFTP
#   pxelinux.0 ldlinux.c32 pxelinux.cfg/default   BIOS PXE with lpxelinux (package pxelinux)
#   job.txt                       the job's kernel parameters, as the menus carry them
# live-boot fetches the squashfs with `fetch=NETBOOT_URL/live/filesystem.squashfs` into RAM,
# through the network card the PC booted from (BOOTIF=, as pxelinux's IPAPPEND 2 sets it).
# Without NETBOOT_JOB the menus start the interface (a technician at the PC); with it the
# first entry runs that job with no keyboard (appliance.then=poweroff: it powers off after).
# No boot loader is built here: every boot file is a Debian package's, unpacked, not
# installed (the .deb files are kept in NETBOOT_DEBS).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ISO=${APPLIANCE_ISO:-$ROOT/build/iso/appliance.iso}
OUT=${NETBOOT_OUT:-$ROOT/build/netboot}
DEBS=${NETBOOT_DEBS:-$ROOT/build/netboot-debs}
JOB=${NETBOOT_JOB:-}
PACKAGES=(ipxe shim-signed grub-efi-amd64-signed pxelinux)

die() { echo "netboot: $*" >&2; exit 1; }
[ -f "$ISO" ] || die "$ISO is missing; \`make iso\` builds it."
command -v xorriso >/dev/null || die "xorriso is missing (apt-get install xorriso)."
[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] \
    || die "ldlinux.c32 is missing (apt-get install syslinux-common)."

# --- where the web server serves this folder
URL=${NETBOOT_URL:-}
if [ -z "$URL" ]; then
    ip=$(hostname -I 2>/dev/null | awk '{print $1}')
    [ -n "$ip" ] || die "set NETBOOT_URL=http://SERVER/PATH (where the web server serves $OUT)."
    URL="http://$ip/appliance"
    echo "netboot: NETBOOT_URL not set; using $URL (this machine's first address)"
fi
URL=${URL%/}
case "$URL" in
    http://*) ;;
    *) die "NETBOOT_URL=$URL must be an http:// address (live-boot and the boot loaders fetch over plain HTTP)." ;;
esac

# --- the job: appliance.* keys only, checked by the appliance's own parser
if [ -n "$JOB" ]; then
    for word in $JOB; do
        case "$word" in
            appliance.*=*) ;;
            *) die "NETBOOT_JOB holds \"$word\"; it takes appliance.KEY=VALUE words only (docs/live-usb.md)." ;;
        esac
    done
    PY=${PYTHON:-python3}
    [ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python
    if ! message=$(cd "$ROOT" && PYTHONPATH=$ROOT "$PY" -c '
import sys
from appliance.cli.cmdline import parse_cmdline
from appliance.errors import UsageError
try:
    parse_cmdline(sys.argv[1])
except UsageError as exc:
    print(exc)
    sys.exit(1)
' "$JOB" 2>&1); then
        die "NETBOOT_JOB: $message"
    fi
fi

# --- Debian's boot files: downloaded once, unpacked, not installed
mkdir -p "$DEBS"
missing=()
for pkg in "${PACKAGES[@]}"; do
    ls "$DEBS/${pkg}"_*.deb >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "netboot: downloading ${missing[*]}"
    if ! (cd "$DEBS" && apt-get download "${missing[@]}" >/dev/null 2>&1); then
        apt-get update -q >/dev/null
        (cd "$DEBS" && apt-get download "${missing[@]}" >/dev/null) \
            || die "apt-get download ${missing[*]} failed (the network to Debian's archive?)."
    fi
fi
UNPACKED=$(mktemp -d)
trap 'rm -rf "$UNPACKED"' EXIT
for pkg in "${PACKAGES[@]}"; do
    deb=$(ls "$DEBS/${pkg}"_*.deb | sort -V | tail -1)
    dpkg-deb -x "$deb" "$UNPACKED"
done

# --- the folder
rm -rf "$OUT"
mkdir -p "$OUT/live" "$OUT/grub" "$OUT/pxelinux.cfg"
xorriso -osirrox on -indev "$ISO" \
    -extract /live/vmlinuz "$OUT/live/vmlinuz" \
    -extract /live/initrd.img "$OUT/live/initrd.img" \
    -extract /live/filesystem.squashfs "$OUT/live/filesystem.squashfs" \
    -extract /boot/grub/grub.cfg "$UNPACKED/iso-grub.cfg" >/dev/null 2>&1 \
    || die "cannot read the kernel, initrd and squashfs from $ISO."
chmod 0644 "$OUT"/live/*
install -m 0644 "$UNPACKED/usr/lib/ipxe/undionly.kpxe" "$UNPACKED/boot/ipxe.efi" "$OUT/"
install -m 0644 "$UNPACKED/usr/lib/shim/shimx64.efi.signed" "$OUT/shimx64.efi"
install -m 0644 "$UNPACKED/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" \
    "$OUT/grubx64.efi"
install -m 0644 "$UNPACKED/usr/lib/PXELINUX/lpxelinux.0" "$OUT/pxelinux.0"
install -m 0644 /usr/lib/syslinux/modules/bios/ldlinux.c32 "$OUT/"

# The ISO's own boot parameters (its GRUB menu's first entry), without findiso= (a GRUB
# variable of the ISO menu), plus where the squashfs comes from.
params=$(sed -nE 's/^\s*linux\s+\/live\/vmlinuz\S*\s+(.*)$/\1/p' "$UNPACKED/iso-grub.cfg" \
    | head -1 | sed -E 's/\s*findiso=\S*//')
[ -n "$params" ] || die "no linux line in the ISO's /boot/grub/grub.cfg."
params="$params fetch=$URL/live/filesystem.squashfs"
echo "$params" > "$OUT/params.txt"
echo "$JOB" > "$OUT/job.txt"

if [ -n "$JOB" ]; then
    first="Disk imaging appliance: ${JOB//appliance./}"
    wait_s=3
else
    first="Disk imaging appliance"
    wait_s=5
fi

# iPXE (BIOS through undionly.kpxe, UEFI through ipxe.efi, or a NIC's own iPXE)
cat > "$OUT/boot.ipxe" <<EOF
#!ipxe
# The disk-imaging appliance over the network (live-build/netboot.sh, docs/netboot.md).
# The unattended job: appliance.* kernel parameters (docs/live-usb.md) on the "set job" line;
# "clear job" instead: the interface, for a technician at the PC.
$( [ -n "$JOB" ] && echo "set job $JOB" || echo "clear job" )
set base $URL
echo $first
kernel \${base}/live/vmlinuz initrd=initrd.img $params BOOTIF=01-\${netX/mac:hexhyp} \${job}
initrd \${base}/live/initrd.img
boot
EOF

# GRUB from Debian's signed network image (shim -> grubx64.efi -> /grub/grub.cfg). Its image
# has no HTTP client, so the kernel and initrd come over TFTP from the same server (GRUB's
# root is the TFTP server it came from); the squashfs still comes over HTTP (fetch=). No
# serial terminal here: the firmware already copies the console to a serial port, and
# GRUB's own serial input stops the menu's countdown.
cat > "$OUT/grub/grub.cfg" <<EOF
# The disk-imaging appliance over the network (live-build/netboot.sh, docs/netboot.md).
# The unattended job: appliance.* kernel parameters (docs/live-usb.md); empty: the interface.
set job="$JOB"
set timeout=$wait_s
set default=0
menuentry "$first" {
    echo "Loading the appliance over TFTP..."
    linux /live/vmlinuz $params BOOTIF=01-\$net_default_mac \$job
    initrd /live/initrd.img
}
menuentry "Disk imaging appliance (the interface, no job)" {
    linux /live/vmlinuz $params BOOTIF=01-\$net_default_mac
    initrd /live/initrd.img
}
EOF

# pxelinux (lpxelinux.0: it fetches http:// itself)
cat > "$OUT/pxelinux.cfg/default" <<EOF
# The disk-imaging appliance over the network (live-build/netboot.sh, docs/netboot.md).
# The unattended job is the APPEND line's appliance.* parameters (docs/live-usb.md).
SERIAL 0 115200
DEFAULT job
PROMPT 1
TIMEOUT ${wait_s}0
LABEL job
    KERNEL $URL/live/vmlinuz
    INITRD $URL/live/initrd.img
    APPEND $params $JOB
    IPAPPEND 2
LABEL interface
    KERNEL $URL/live/vmlinuz
    INITRD $URL/live/initrd.img
    APPEND $params
    IPAPPEND 2
EOF

size=$(du -sm "$OUT" | cut -f1)
echo "netboot: $OUT ($size MiB) for $URL"
echo "netboot: kernel parameters: $params${JOB:+ $JOB}"
