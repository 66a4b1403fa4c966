# SPDX-License-Identifier: AGPL-3.0-or-later
"""Operators' second factor: TOTP (RFC 6238, any authenticator app) with one-time recovery codes."""
