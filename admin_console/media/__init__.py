"""Media: the files the antivirus refused, the signatures in use, quarantine/release/delete."""

from admin_console.media.views import bp

__all__ = ["bp"]
