"""Filesystems: which blocks are used (partclone, our btrfs map), each filesystem's own
checker, growing and shrinking, the files that sectors belong to, comparing trees of files.
"""
