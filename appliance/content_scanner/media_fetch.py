"""Fetching media from Synapse's authenticated media API with the client's own access token,
so Synapse decides who may read what; the scanner holds no token of its own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

from appliance.content_scanner.errors import ErrCode, ScannerError
from appliance.content_scanner.media_ref import MediaRef

logger = logging.getLogger(__name__)

MEDIA_PREFIX = "/_matrix/client/v1/media"
THUMBNAIL_PARAMS = ("width", "height", "method", "animated")
# Passed on to the client with the file: what it is, and Synapse's protections for showing it.
PASSED_HEADERS = (
    "Content-Type",
    "Content-Disposition",
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Cross-Origin-Resource-Policy",
)
ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class FetchedMedia:
    content: bytes
    headers: CIMultiDict


class MediaFetcher:
    def __init__(self, synapse_url: str, max_bytes: int, timeout: float):
        self._base = synapse_url
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def download(self, media: MediaRef, authorization: str | None) -> FetchedMedia:
        return await self._get(f"download/{_quoted(media)}", {}, authorization)

    async def thumbnail(
        self, media: MediaRef, query: dict[str, str], authorization: str | None
    ) -> FetchedMedia:
        params = {name: query[name] for name in THUMBNAIL_PARAMS if name in query}
        return await self._get(f"thumbnail/{_quoted(media)}", params, authorization)

    async def _get(self, path: str, params: dict, authorization: str | None) -> FetchedMedia:
        assert self._session is not None, "start() first"
        headers = {"Authorization": authorization} if authorization else {}
        url = f"{self._base}{MEDIA_PREFIX}/{path}"
        try:
            async with self._session.get(
                url, params=params, headers=headers, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise await _error_from(response)
                content = await self._read_limited(response)
                passed = CIMultiDict(
                    (name, response.headers[name])
                    for name in PASSED_HEADERS
                    if name in response.headers
                )
                return FetchedMedia(content, passed)
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.error("cannot fetch %s: %r", url, error)
            raise ScannerError(
                502, ErrCode.REQUEST_FAILED, "The media repository could not be reached"
            ) from None

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        if (response.content_length or 0) > self._max_bytes:
            raise _too_large(self._max_bytes)
        content = bytearray()
        async for chunk in response.content.iter_chunked(1 << 20):
            content += chunk
            if len(content) > self._max_bytes:
                raise _too_large(self._max_bytes)
        return bytes(content)


def _quoted(media: MediaRef) -> str:
    return f"{quote(media.server_name, safe='')}/{quote(media.media_id, safe='')}"


def _too_large(limit: int) -> ScannerError:
    return ScannerError(
        502, ErrCode.REQUEST_FAILED, f"The file is larger than the {limit} bytes this server scans"
    )


async def _error_from(response: aiohttp.ClientResponse) -> ScannerError:
    """Synapse's answer, said in the content scanner's terms."""
    body = await response.content.read(ERROR_BODY_LIMIT)
    try:
        error = json.loads(body) if body else {}
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    errcode, message = error.get("errcode"), error.get("error")
    if response.status == 404:
        return ScannerError(404, ErrCode.NOT_FOUND, "The media was not found")
    if response.status == 401 and errcode in (ErrCode.MISSING_TOKEN, ErrCode.UNKNOWN_TOKEN):
        return ScannerError(401, ErrCode(errcode), message or "Access token missing or unknown")
    logger.error("the media repository answered %s %s", response.status, body[:200])
    return ScannerError(
        502,
        ErrCode.REQUEST_FAILED,
        f"The media repository answered {response.status}" + (f": {message}" if message else ""),
    )
