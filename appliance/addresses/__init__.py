# SPDX-License-Identifier: AGPL-3.0-or-later
"""Parsing of what names things: professional email addresses, the identity derived from them,
allowlist entries, media URIs.
"""
