"""Planning on data, never writing a disk: an image's regions, fitting a layout onto another
size, the partition-table script, what a save will hold (preflight), and every safety rule.
"""
