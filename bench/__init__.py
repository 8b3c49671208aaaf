"""`make bench`: the engine side by side with Clonezilla's pipeline (partclone | zstd), on the
same realistic disk, in the same run.

Modules: `sh` (tools, our loop devices, mounts, the page cache), `build` (the cached disk
images), `measure` (one timed process: wall time, CPU, peak RSS of its tree), `rawread` (the
O_DIRECT read of the used data, and digests for the restore checks), `jobs` (the competing
commands), `report` (statistics, targets, the Markdown table, results/bench.json and
docs/performance.md) and `__main__` (the run).

Nothing in appliance/ imports this package; it imports appliance only for the used-block maps
and the constants the engine reads with.
"""
