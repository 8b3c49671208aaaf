"""The image repository (format v1): the folder, its chunks, manifests and indexes, the
writer's lock, reading an image back, mounting the filesystem that holds a repository.
"""
