# SPDX-License-Identifier: AGPL-3.0-or-later
"""Externals and email invitations: who is external, invitations by email, the identity
service, its key."""
