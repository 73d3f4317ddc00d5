"""The documented examples, run as written (seed-tests §F)."""
