"""Rooms: the kinds of rooms (pure rules) and their enforcement on Synapse's callbacks."""
