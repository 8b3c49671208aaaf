"""Moving bytes: the O_DIRECT window pipelines with their worker pools, and the
copy-on-write views (FUSE files) of a partition or of an image's region.
"""
