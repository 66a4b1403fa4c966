# SPDX-License-Identifier: AGPL-3.0-or-later
"""Rooms: the kinds of rooms (pure rules) and their enforcement on Synapse's callbacks."""
