"""Export files: their formats and their manifests."""
