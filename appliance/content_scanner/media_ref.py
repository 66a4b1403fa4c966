"""Which media a request is about: ``mxc://{server_name}/{media_id}``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.content_scanner.errors import ErrCode, ScannerError

# The Matrix spec's grammar: a server name (host and optional port) and an opaque media ID
# made of URL-safe characters. Anything else never reaches Synapse.
_SERVER_NAME = re.compile(r"^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class MediaRef:
    server_name: str
    media_id: str

    @classmethod
    def from_parts(cls, server_name: str, media_id: str) -> MediaRef:
        if not _SERVER_NAME.match(server_name) or not _MEDIA_ID.match(media_id):
            raise ScannerError(400, ErrCode.UNKNOWN, "Malformed media ID")
        return cls(server_name, media_id)

    @classmethod
    def from_mxc(cls, url: str) -> MediaRef:
        server_name, _, media_id = url.removeprefix("mxc://").partition("/")
        if not url.startswith("mxc://") or "/" in media_id:
            raise ScannerError(400, ErrCode.MALFORMED_JSON, f"Not an mxc:// media URL: {url!r}")
        return cls.from_parts(server_name, media_id)

    @property
    def path(self) -> str:
        return f"{self.server_name}/{self.media_id}"
