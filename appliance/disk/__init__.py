"""Disks as data: identity (udev, sysfs), the partition table (the one module that imports
pyparted), filesystems found on them (blkid), what uses a disk (mounts, swap, holders), the
incomplete-restore marker, and O_DIRECT block I/O. Probing never writes a disk.
"""
