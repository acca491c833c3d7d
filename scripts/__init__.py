"""Command-line tools beside train.py/test.py: one task each."""
