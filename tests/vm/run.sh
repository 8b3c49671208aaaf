#!/bin/bash
# `make vm-test`: boot the ISO (build/iso/appliance.iso) in qemu, UEFI and BIOS, and run the
# VM tests (tests/vm/test_iso_vm.py). At most 20 minutes; figures in build/vm-test/.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "vm-test: needs root (loop devices, KVM)" >&2; exit 1; }
missing=()
for pkg in qemu-system-x86 ovmf seabios xorriso; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "vm-test: apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ -w /dev/kvm ] || echo "vm-test: no /dev/kvm: qemu emulates the CPU (much slower)" >&2
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
rm -rf build/vm-test
mkdir -p build/vm-test
started=$(date +%s)
rc=0
APPLIANCE_VM_TEST=1 timeout 1200 "$PY" -m pytest -q -ra -p no:cacheprovider tests/vm "$@" || rc=$?
echo "vm-test: $(( $(date +%s) - started )) s; figures:"
cat build/vm-test/figures.json 2>/dev/null || true
exit $rc
