# SPDX-License-Identifier: AGPL-3.0-or-later
"""Accounts: the registration policy, the allowlist of domains, Tchap's domain lookup."""
