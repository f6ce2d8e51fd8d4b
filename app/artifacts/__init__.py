"""Files on disk under DATA_DIR: atomic folders, checksums, the model artifact."""
