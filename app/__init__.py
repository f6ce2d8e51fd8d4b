"""spectral-topics application: API, settings, storage, ingestion, CLI."""
