"""Attachments: files bound to the message that carries them (docs/attachments.md).

Blobs are content-addressed (by SHA-256) in a `BlobStore`: a directory next to the
SQLite file, or the database itself. SQL says which blob each attachment uses, so a
blob no attachment names is found there and collected (`collector`).
"""
