"""Input side: expanding paths, decompressing, re-encoding, and reading newline-aligned chunks."""
