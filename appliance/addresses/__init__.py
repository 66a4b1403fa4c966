"""Parsing of what names things: professional email addresses, the identity derived from them,
allowlist entries, media URIs.
"""
