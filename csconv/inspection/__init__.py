"""Reading a converted output back: verify.py (the manifest, checksums and records, and
comparing two outputs), preview.py (one frame as a picture), stats.py (class shares)."""
