"""Archives: download (resume, checksums) and safe unpacking."""
