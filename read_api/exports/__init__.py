"""Export jobs as their requesters follow them: progress, manifest, download."""
