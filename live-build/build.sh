#!/bin/bash
# `make iso`: build the live ISO (Debian 12, hybrid BIOS + UEFI, dd-able) with live-build.
#
#   bash live-build/build.sh            -> build/iso/appliance.iso (skipped when up to date)
#   FORCE=1 bash live-build/build.sh    -> build again even if nothing changed
#
# The ISO is rebuilt only when its inputs change: this folder, pyproject.toml, appliance/ and
# tui/. The key of the inputs is kept beside the ISO. live-build's package cache (build/iso/lb/
# cache) is kept between builds, so a rebuild downloads nothing it already has.
# Needs root, Debian 12, Python 3.11 (the wheels must match the image's python3) and the
# network to Debian's archive and PyPI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${ISO_OUT:-$ROOT/build/iso}
ISO=$OUT/appliance.iso
MIRROR=${LB_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${LB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

die() { echo "iso: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "building the ISO needs root (live-build runs debootstrap and chroot)."

inputs_key() {
    cd "$ROOT"
    {
        # (netboot.sh reads the built ISO; it is no input of it)
        find live-build appliance tui -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
            ! -path live-build/netboot.sh 2>/dev/null | LC_ALL=C sort | xargs -r sha256sum
        sha256sum pyproject.toml
    } | sha256sum | cut -c1-16
}
key=$(inputs_key)
if [ -z "${FORCE:-}" ] && [ -f "$ISO" ] && [ "$(cat "$ISO.key" 2>/dev/null)" = "$key" ]; then
    echo "iso: $ISO is up to date (inputs $key); FORCE=1 builds it again."
    exit 0
fi

started=$(date +%s)
mkdir -p "$OUT"
LOG=$OUT/build.log
: > "$LOG"
log() { echo "iso: $*" | tee -a "$LOG"; }
log "building the ISO (inputs $key), started $(date -u '+%Y-%m-%d %H:%M:%S UTC')"

# --- the tools live-build and the wheel build need on this host
HOST_PACKAGES=(live-build debootstrap xorriso squashfs-tools isolinux syslinux-common
               grub-efi-amd64-bin grub-pc-bin grub-common mtools dosfstools cpio
               gcc pkg-config libparted-dev python3-dev)
missing=()
for pkg in "${HOST_PACKAGES[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >>"$LOG" 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1
fi

# --- wheels: the project and its pinned dependencies, pyparted compiled here (cp311)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = 3.11 ] || die "$PY is Python $pyver; the image's python3 is 3.11, so the wheels \
must be built with a Python 3.11 (set PYTHON=...)."
WORK=$OUT/lb
SRC=$OUT/src
WHEELS=$OUT/wheels
rm -rf "$SRC" "$WHEELS"
mkdir -p "$SRC" "$WHEELS/extra"
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/appliance" "$SRC/"
[ -d "$ROOT/tui" ] && cp -r "$ROOT/tui" "$WHEELS/extra/"
find "$SRC" "$WHEELS" -name __pycache__ -prune -exec rm -rf {} +
t0=$(date +%s)
log "wheels with $PY"
cp "$ROOT/live-build/requirements-image.txt" "$WHEELS/"
"$PY" -m pip wheel -q --wheel-dir "$WHEELS" "$SRC" -r "$WHEELS/requirements-image.txt" \
    >>"$LOG" 2>&1 \
    || die "building the wheels failed; see $LOG."
log "wheels: $(cd "$WHEELS" && ls ./*.whl | xargs -n1 basename | tr '\n' ' ') ($(( $(date +%s) - t0 )) s)"

# --- live-build: a fresh config each time, the package cache kept
mkdir -p "$WORK"
cd "$WORK"
if [ -d config ]; then lb clean >>"$LOG" 2>&1 || true; fi
rm -rf config
cp -r "$ROOT/live-build/config" config
mkdir -p config/includes.chroot/opt
cp -r "$WHEELS" config/includes.chroot/opt/appliance-wheels

# Boot parameters: live-boot never activates swap (no `swap`) and never uses persistence;
# systemd makes no swap or mount units from what it finds on the disks.
BOOTAPPEND="boot=live components quiet nopersistence noswap noautologin \
systemd.swap=0 systemd.gpt_auto=0 hostname=appliance console=ttyS0,115200 console=tty0"
lb config \
    --distribution bookworm \
    --archive-areas "main non-free-firmware" \
    --mirror-bootstrap "$MIRROR" --mirror-chroot "$MIRROR" --mirror-binary "$MIRROR" \
    --mirror-chroot-security "$SECURITY_MIRROR" --mirror-binary-security "$SECURITY_MIRROR" \
    --binary-images iso-hybrid \
    --bootloaders "syslinux grub-efi" \
    --uefi-secure-boot enable \
    --debian-installer none \
    --apt-recommends false \
    --apt-indices false \
    --memtest none \
    --firmware-binary false --firmware-chroot false \
    --linux-flavours amd64 \
    --iso-volume APPLIANCE \
    --iso-application "Disk imaging appliance" \
    --bootappend-live "$BOOTAPPEND" \
    --chroot-squashfs-compression-type xz \
    --zsync false \
    --checksums sha256 \
    --cache true >>"$LOG" 2>&1
log "live-build: lb build (its output is in $LOG)"
t0=$(date +%s)
if ! lb build >>"$LOG" 2>&1; then
    tail -30 "$LOG" >&2
    die "lb build failed after $(( $(date +%s) - t0 )) s; see $LOG."
fi
built=$(ls -t ./*.hybrid.iso 2>/dev/null | head -1)
[ -n "$built" ] || die "lb build made no ISO; see $LOG."
mv "$built" "$ISO"
echo "$key" > "$ISO.key"
size=$(stat -c %s "$ISO")
log "ISO $ISO: $(( size / 1048576 )) MiB ($size bytes); squashfs $(( $(stat -c %s binary/live/filesystem.squashfs 2>/dev/null || echo 0) / 1048576 )) MiB"
log "build time $(( $(date +%s) - started )) s (lb build $(( $(date +%s) - t0 )) s)"
