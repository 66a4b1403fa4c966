# SPDX-License-Identifier: AGPL-3.0-or-later
"""The all-in-one evaluation appliance: its services, their supervision, `up`/`down`/`status`."""
