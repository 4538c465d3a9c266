"""Local mode: the same manifests, run as local processes with file-backed status."""
