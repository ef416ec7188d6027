"""Runnable measurements: each script prints its figures, the machine, and a last line of JSON."""
