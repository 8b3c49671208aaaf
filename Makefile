# The README's two commands: `make demo` (the TUI on demo disks) and `make check`, as root.
PY := .venv/bin/python
.PHONY: setup test test-slow check lint types demo clean

setup:
	bash .ci/install

lint: setup
	.venv/bin/ruff check appliance tui tests bench
	.venv/bin/ruff format --check appliance tui tests bench
	.venv/bin/lint-imports

types: setup
	.venv/bin/mypy

# The default tests (about 15 minutes); test-slow: the long ones (marked `slow`), which CI
# runs after them.
test: setup
	$(PY) -m pytest -q -ra --durations=25 -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -ra --durations=10 -m slow

check: lint types test

demo: setup
	.venv/bin/appliance tui --demo

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache results

# The live USB (docs/live-usb.md). Not part of `make check`: they need root, debootstrap,
# the network to Debian's archive, and (vm-test) qemu with KVM.
.PHONY: iso vm-test netboot
iso:
	bash live-build/build.sh

# What a PXE/HTTP boot server serves (docs/netboot.md): build/netboot/ from the ISO.
# NETBOOT_URL=http://SERVER/PATH (where a web server serves it), NETBOOT_JOB="appliance.job=..."
netboot: iso
	bash live-build/netboot.sh

vm-test: setup iso
	bash tests/vm/run.sh

# The benchmark against Clonezilla's pipeline (docs/performance.md). Not part of `make check`:
# root, loop devices, about 10 minutes; the disk images are cached in /var/tmp/appliance-bench.
.PHONY: bench
bench: setup
	$(PY) -m bench $(BENCH_ARGS)
