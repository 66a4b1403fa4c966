"""End-to-end tests of the console in a real browser (a package, so its conftest does not
shadow tests/conftest.py)."""
