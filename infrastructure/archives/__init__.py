"""Archive files: Parquet by tenant and day, each with a manifest and its SHA-256."""
