"""Accounts: the registration policy, the allowlist of domains, Tchap's domain lookup."""
