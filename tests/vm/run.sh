#!/bin/bash
# `make vm-test`: boot the ISO (build/iso/appliance.iso) in qemu, UEFI, UEFI with Secure Boot
# enforced and BIOS, and run the VM tests (tests/vm/). At most 35 minutes (under TCG); figures
# in build/vm-test/.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "vm-test: needs root (loop devices, KVM)" >&2; exit 1; }
missing=()
for pkg in qemu-system-x86 ovmf seabios xorriso; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# the file servers of test_netrepo_vm.py (smbd; NFS-Ganesha: this kernel may have no nfsd),
# the boot files `make netboot` unpacks (apt-get download) and qemu's network boot ROMs
for pkg in samba nfs-ganesha nfs-ganesha-vfs syslinux-common ipxe-qemu nginx-light; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "vm-test: apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# KVM where it works: some nested hosts have a /dev/kvm that cannot run a kernel (it spins in
# the decompressor) or OVMF (emulation failure). Probe with the ISO's kernel; else emulate (TCG).
if [ -z "${APPLIANCE_VM_ACCEL:-}" ]; then
    APPLIANCE_VM_ACCEL=tcg
    if [ -w /dev/kvm ]; then
        probe=$(mktemp -d)
        xorriso -osirrox on -indev build/iso/appliance.iso -extract /live/vmlinuz \
            "$probe/vmlinuz" >/dev/null 2>&1 || true
        if timeout 25 qemu-system-x86_64 -accel kvm -m 256 -nodefaults -display none \
                -no-reboot -kernel "$probe/vmlinuz" -append "console=ttyS0 panic=-1" \
                -serial stdio 2>/dev/null | grep -q -m1 "Linux version"; then
            APPLIANCE_VM_ACCEL=kvm
        fi
        rm -rf "$probe"
    fi
fi
export APPLIANCE_VM_ACCEL
echo "vm-test: qemu accelerator: $APPLIANCE_VM_ACCEL"
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
rm -rf build/vm-test
mkdir -p build/vm-test
started=$(date +%s)
rc=0
APPLIANCE_VM_TEST=1 timeout "${APPLIANCE_VM_TIMEOUT:-4800}" "$PY" -m pytest -q -ra -p no:cacheprovider tests/vm "$@" || rc=$?
echo "vm-test: $(( $(date +%s) - started )) s; figures:"
cat build/vm-test/figures.json 2>/dev/null || true
exit $rc
