# SPDX-License-Identifier: AGPL-3.0-or-later
"""Which media a request is about: ``mxc://{server_name}/{media_id}``, strictly validated.

Shared by the content scanner and the console, which both put these two parts into Synapse
URLs: anything outside the Matrix grammar is refused here, so no caller can be walked to
another endpoint (``..`` as a server name, ``/`` or ``%2F`` in a media ID).

* server name: a DNS name or IPv4 address whose labels are non-empty, made of letters, digits
  and ``-``, each with at least one letter or digit (so never ``.``, ``..`` or ``a..b``), or a
  bracketed IPv6 literal; then an optional port;
* media ID: ``[A-Za-z0-9_-]+``, the spec's URL-safe opaque ID.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote

MXC_PREFIX = "mxc://"
MAX_SERVER_NAME = 255
MAX_MEDIA_ID = 255
_LABEL = re.compile(r"^[A-Za-z0-9-]{1,63}$")
_HAS_ALNUM = re.compile(r"[A-Za-z0-9]")
_PORT = re.compile(r"^[0-9]{1,5}$")
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class InvalidMediaRef(ValueError):
    """Not a media reference; the message says why, for a human."""


def valid_server_name(server_name: str) -> bool:
    if not 0 < len(server_name) <= MAX_SERVER_NAME:
        return False
    host, port = _split_port(server_name)
    if port is not None and not (_PORT.match(port) and 0 < int(port) <= 65535):
        return False
    if host.startswith("["):
        return host.endswith("]") and _is_ipv6(host[1:-1])
    return all(_LABEL.match(label) and _HAS_ALNUM.search(label) for label in host.split("."))


def valid_media_id(media_id: str) -> bool:
    return 0 < len(media_id) <= MAX_MEDIA_ID and bool(_MEDIA_ID.match(media_id))


def _split_port(server_name: str) -> tuple[str, str | None]:
    """("host", "port") or ("host", None); an IPv6 literal keeps its brackets."""
    if server_name.startswith("["):
        host, bracket, rest = server_name.partition("]")
        return host + bracket, rest.removeprefix(":") if rest else None
    host, colon, port = server_name.rpartition(":")
    return (host, port) if colon else (server_name, None)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class MediaRef:
    server_name: str
    media_id: str

    @classmethod
    def from_parts(cls, server_name: str, media_id: str) -> MediaRef:
        if not valid_server_name(server_name):
            raise InvalidMediaRef(f"{server_name!r} is not a Matrix server name")
        if not valid_media_id(media_id):
            raise InvalidMediaRef(f"{media_id!r} is not a media ID (letters, digits, _ and -)")
        return cls(server_name, media_id)

    @classmethod
    def from_mxc(cls, url: str) -> MediaRef:
        """Exactly ``mxc://server_name/media_id``."""
        if not url.startswith(MXC_PREFIX):
            raise InvalidMediaRef(f"{url!r} is not an mxc:// URL")
        server_name, _, media_id = url.removeprefix(MXC_PREFIX).partition("/")
        return cls.from_parts(server_name, media_id)

    @classmethod
    def parse(cls, text: str, local_server: str) -> MediaRef:
        """What an operator types: ``mxc://server/id``, ``server/id``, or ``local/id`` for
        this server's own media."""
        server_name, _, media_id = text.strip().removeprefix(MXC_PREFIX).partition("/")
        return cls.from_parts(local_server if server_name == "local" else server_name, media_id)

    def __str__(self) -> str:
        return f"{MXC_PREFIX}{self.server_name}/{self.media_id}"

    @property
    def url_path(self) -> str:
        """``server_name/media_id`` as two URL path segments (an IPv6 server's brackets and a
        port's colon are percent-encoded)."""
        return f"{quote(self.server_name, safe='')}/{quote(self.media_id, safe='')}"
