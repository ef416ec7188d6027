"""For tools that want a setup.py, such as Beam's `--setup_file` (Dataflow workers install the package from
it). Everything, package data included, is declared in pyproject.toml."""

from setuptools import setup

setup()
