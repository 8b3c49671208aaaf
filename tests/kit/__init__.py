"""Test helpers, a package of their own: real disks on loop devices (diskbuild, loops),
an independent oracle that compares disks (diskcompare), the command line (cli), a dying
disk (faultyfile), and for the interface a fake engine, scenes and Pilot helpers (tui/)."""
