# SPDX-License-Identifier: AGPL-3.0-or-later
"""End-to-end tests of the console in a real browser (a package, so its conftest does not
shadow tests/conftest.py)."""
