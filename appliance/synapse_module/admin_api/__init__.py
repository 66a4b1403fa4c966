# SPDX-License-Identifier: AGPL-3.0-or-later
"""Admin-only endpoints under /_synapse/client/appliance/v1/ for what Synapse's Admin API
does not cover (server-admin token required)."""
