"""The package version, in one place: setup.py reads this line as text, the package imports it."""

__version__ = "0.1.0"
