"""Externals and email invitations: who is external, invitations by email, the identity
service, its key."""
