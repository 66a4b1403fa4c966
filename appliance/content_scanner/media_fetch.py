# SPDX-License-Identifier: AGPL-3.0-or-later
"""Fetching media from Synapse's authenticated media API with the client's own access token,
so Synapse decides who may read what; the scanner holds no token of its own. Every download
asks Synapse; only `check_access` (a verdict without the file) may answer from the recent
grants in access_cache.

A file is read into one buffer, sized from Content-Length when Synapse sends it, and handed on
as that buffer: it is held in memory once, never copied whole.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from appliance.addresses.media_ref import MediaRef
from appliance.antivirus.clamd import CHUNK_SIZE
from appliance.content_scanner.access_cache import AccessCache
from appliance.content_scanner.errors import ErrCode, ScannerError

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
    content: bytearray
    headers: CIMultiDict


class MediaFetcher:
    def __init__(self, synapse_url: str, max_bytes: int, timeout: float, grants: AccessCache):
        self._base = synapse_url
        self._grants = grants
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def download(self, media: MediaRef, authorization: str | None) -> FetchedMedia:
        fetched = await self._request("GET", f"download/{media.url_path}", {}, authorization)
        self._grants.grant(authorization, media)
        return fetched

    async def thumbnail(
        self, media: MediaRef, query: dict[str, str], authorization: str | None
    ) -> FetchedMedia:
        params = {name: query[name] for name in THUMBNAIL_PARAMS if name in query}
        return await self._request("GET", f"thumbnail/{media.url_path}", params, authorization)

    async def check_access(self, media: MediaRef, authorization: str | None) -> None:
        """Whether Synapse would give this client this media, without the file: a recent grant
        (see access_cache), else a HEAD on the download (Synapse answers HEAD as GET, with the
        same access checks, and no body). Raises ScannerError when it would not."""
        if self._grants.allows(authorization, media):
            return
        await self._request("HEAD", f"download/{media.url_path}", {}, authorization)
        self._grants.grant(authorization, media)

    async def _request(
        self, method: str, path: str, params: dict, authorization: str | None
    ) -> FetchedMedia:
        assert self._session is not None, "start() first"
        headers = {"Authorization": authorization} if authorization else {}
        url = f"{self._base}{MEDIA_PREFIX}/{path}"
        try:
            async with self._session.request(
                method, url, params=params, headers=headers, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise await _error_from(response, authorization)
                content = bytearray() if method == "HEAD" else await self._read(response)
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

    async def _read(self, response: aiohttp.ClientResponse) -> bytearray:
        declared = response.content_length
        if (declared or 0) > self._max_bytes:
            raise _too_large(self._max_bytes)
        if declared is None:  # chunked transfer: grow the buffer in place
            content = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                content += chunk
                if len(content) > self._max_bytes:
                    raise _too_large(self._max_bytes)
            return content
        # aiohttp's parser delivers exactly Content-Length bytes, or raises ClientPayloadError.
        content, filled = bytearray(declared), 0
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            content[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        return content


def _too_large(limit: int) -> ScannerError:
    return ScannerError(
        502, ErrCode.REQUEST_FAILED, f"The file is larger than the {limit} bytes this server scans"
    )


async def _error_from(response: aiohttp.ClientResponse, authorization: str | None) -> ScannerError:
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
    if response.status == 401:
        # An answer to HEAD has no body, hence no errcode: what was sent tells which it is.
        if errcode not in (ErrCode.MISSING_TOKEN, ErrCode.UNKNOWN_TOKEN):
            errcode = ErrCode.UNKNOWN_TOKEN if authorization else ErrCode.MISSING_TOKEN
        return ScannerError(401, ErrCode(errcode), message or "Access token missing or unknown")
    logger.error("the media repository answered %s %s", response.status, body[:200])
    return ScannerError(
        502,
        ErrCode.REQUEST_FAILED,
        f"The media repository answered {response.status}" + (f": {message}" if message else ""),
    )
