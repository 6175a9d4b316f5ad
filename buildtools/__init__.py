"""Helpers for setup.py (kept importable without the compiled extension, so tests can check them)."""
