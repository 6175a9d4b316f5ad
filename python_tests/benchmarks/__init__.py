"""pytest-benchmark suites (a package, so that its conftest does not shadow python_tests/conftest.py)."""
