"""Enrichment and matching as plain modules, the Beam wiring over them, the job and the CLI."""
