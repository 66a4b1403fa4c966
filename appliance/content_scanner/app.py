# SPDX-License-Identifier: AGPL-3.0-or-later
"""The HTTP API (matrix-content-scanner's), on aiohttp.

GET  /_matrix/media_proxy/unstable/public_key
GET  /_matrix/media_proxy/unstable/{scan,download,thumbnail}/{server_name}/{media_id}
POST /_matrix/media_proxy/unstable/{scan_encrypted,download_encrypted}  {"file": EncryptedFile}
     (or {"encrypted_body": {...}}: the same body, encrypted to the public key)
GET  /health  (ours: clamd reachable, signature version, counters)

Errors are ``{"reason": CODE, "info": text}`` (see errors.py), aiohttp's own refusals (no
such route, body too large) included. A file is only ever sent after a clean verdict; the
download_encrypted answer is the ciphertext, which the client decrypts. At most
``concurrent_scans`` requests hold a file (fetch, check, decrypt, scan) at once, which bounds
the memory files take; a cached verdict needs no file and does not wait for one of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from aiohttp import web

from appliance.addresses.media_ref import InvalidMediaRef, MediaRef
from appliance.antivirus.clamd import ClamdClient
from appliance.antivirus.encrypted import is_encrypted
from appliance.antivirus.signatures import SignatureFiles, SignatureState
from appliance.antivirus.verdict import Verdict
from appliance.content_scanner.access_cache import AccessCache
from appliance.content_scanner.attachment import EncryptedFile, parse_encrypted_file
from appliance.content_scanner.body_crypto import BodyDecryptor
from appliance.content_scanner.config import ScannerConfig
from appliance.content_scanner.errors import ErrCode, ScannerError, malformed
from appliance.content_scanner.media_fetch import FetchedMedia, MediaFetcher
from appliance.content_scanner.scanner import Scanner, whole
from appliance.content_scanner.verdict_store import VerdictStore

logger = logging.getLogger(__name__)

PREFIX = "/_matrix/media_proxy/unstable"
BODY_LIMIT = 1 << 20  # request bodies are attachment metadata: a few hundred bytes
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
}
SCANNER = web.AppKey("scanner", Scanner)
FETCHER = web.AppKey("fetcher", MediaFetcher)
DECRYPTOR = web.AppKey("decryptor", BodyDecryptor)
SCANS = web.AppKey("scans", asyncio.Semaphore)
Fetch = Callable[[MediaFetcher, str | None], Awaitable[FetchedMedia]]


def _not_clean(verdict: Verdict) -> ScannerError:
    return ScannerError(403, ErrCode.NOT_CLEAN, _verdict_info(verdict))


# matrix-content-scanner's wording for a clean and an infected file; ours for an encrypted one.
CLEAN_INFO = "File is clean"
INFECTED_INFO = "***VIRUS DETECTED*** ({signature})"
ENCRYPTED_INFO = (
    "Encrypted file (password-protected): the antivirus cannot look inside it ({signature})"
)


def _verdict_info(verdict: Verdict) -> str:
    if verdict.clean:
        return CLEAN_INFO
    template = ENCRYPTED_INFO if is_encrypted(verdict) else INFECTED_INFO
    return template.format(signature=verdict.signature)


def _verdict_json(verdict: Verdict) -> web.Response:
    return web.json_response({"clean": verdict.clean, "info": _verdict_info(verdict)})


def _media(request: web.Request) -> MediaRef:
    try:
        return MediaRef.from_parts(
            request.match_info["server_name"], request.match_info["media_id"]
        )
    except InvalidMediaRef as error:
        raise ScannerError(400, ErrCode.UNKNOWN, f"Malformed media ID: {error}") from None


def _authorization(request: web.Request) -> str | None:
    return request.headers.get("Authorization")


async def _encrypted_file(request: web.Request) -> EncryptedFile:
    try:
        body = await request.json()
    except ValueError as error:
        raise malformed(f"The body is not JSON: {error}") from None
    if isinstance(body, dict) and "encrypted_body" in body:
        body = request.app[DECRYPTOR].decrypt(body["encrypted_body"])
    return parse_encrypted_file(body)


# Handlers ------------------------------------------------------------------------------------
async def public_key(request: web.Request) -> web.Response:
    return web.json_response({"public_key": request.app[DECRYPTOR].public_key})


async def scan(request: web.Request) -> web.Response:
    media = _media(request)
    verdict, _ = await _plain(request, lambda fetcher, auth: fetcher.download(media, auth))
    return _verdict_json(verdict)


async def download(request: web.Request) -> web.Response:
    media = _media(request)
    return _if_clean(*await _plain(request, lambda fetcher, auth: fetcher.download(media, auth)))


async def thumbnail(request: web.Request) -> web.Response:
    media, query = _media(request), request.query
    return _if_clean(
        *await _plain(request, lambda fetcher, auth: fetcher.thumbnail(media, dict(query), auth))
    )


async def scan_encrypted(request: web.Request) -> web.Response:
    file = await _encrypted_file(request)
    scanner = request.app[SCANNER]
    state = await scanner.signature_state()
    known = scanner.known_attachment(file, state)
    if known is None:
        verdict, _ = await _attachment(request, file, state)
        return _verdict_json(verdict)
    # Only the verdict comes from the cache: Synapse still says whether this client may read
    # this media (token valid, media neither deleted nor quarantined), or said so within the
    # last access_cache.TTL_SECONDS.
    await request.app[FETCHER].check_access(file.media, _authorization(request))
    return _verdict_json(known)


async def download_encrypted(request: web.Request) -> web.Response:
    file = await _encrypted_file(request)
    state = await request.app[SCANNER].signature_state()
    return _if_clean(*await _attachment(request, file, state))


async def _plain(request: web.Request, fetch: Fetch) -> tuple[Verdict, FetchedMedia]:
    """Fetch with the client's token: the verdict on what was fetched, and it."""
    scanner = request.app[SCANNER]
    state = await scanner.signature_state()
    async with request.app[SCANS]:
        fetched = await fetch(request.app[FETCHER], _authorization(request))
        _, verdict = await scanner.content_verdict(whole(fetched.content), state)
    return verdict, fetched


async def _attachment(
    request: web.Request, file: EncryptedFile, state: SignatureState
) -> tuple[Verdict, FetchedMedia]:
    """Fetch the attachment with the client's token: the verdict on its plaintext, and the
    ciphertext fetched."""
    async with request.app[SCANS]:
        fetched = await request.app[FETCHER].download(file.media, _authorization(request))
        verdict = await request.app[SCANNER].attachment_verdict(file, fetched.content, state)
    return verdict, fetched


def _if_clean(verdict: Verdict, fetched: FetchedMedia) -> web.Response:
    """What was fetched, sent only after a clean verdict on it."""
    if not verdict.clean:
        raise _not_clean(verdict)
    return web.Response(body=fetched.content, headers=fetched.headers)


async def health(request: web.Request) -> web.Response:
    scanner = request.app[SCANNER]
    try:
        state = await scanner.signature_state()
    except ScannerError as error:
        return web.json_response({"ok": False, "error": error.info}, status=503)
    return web.json_response(
        {
            "ok": True,
            "engine": state.engine,
            "signature_version": state.version,
            "signature_age_seconds": state.age_seconds,
            # False for a while after the signature files change: see SignatureWatch.
            "verdicts_cached": state.cacheable,
            "stats": asdict(scanner.stats),
        }
    )


# Errors and CORS -----------------------------------------------------------------------------
@web.middleware
async def errors_and_cors(request: web.Request, handler) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except ScannerError as error:
        response = web.json_response(error.to_json(), status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = _aiohttp_refusal(error)
    except Exception:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        response = web.json_response(
            {"reason": ErrCode.UNKNOWN, "info": "Internal Server Error"}, status=500
        )
    response.headers.update(CORS_HEADERS)
    return response


def _aiohttp_refusal(error: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route, wrong method, body too large, ...), with their status,
    in the API's error format."""
    if isinstance(error, web.HTTPNotFound):
        reason, info = ErrCode.NOT_FOUND, "No such endpoint"
    elif isinstance(error, web.HTTPMethodNotAllowed):
        reason, info = ErrCode.UNKNOWN, f"Use {', '.join(sorted(error.allowed_methods))}"
    elif isinstance(error, web.HTTPRequestEntityTooLarge):
        reason, info = ErrCode.TOO_LARGE, error.text or "The request body is too large"
    else:
        reason, info = ErrCode.UNKNOWN, error.text or error.reason
    return web.json_response({"reason": reason, "info": info}, status=error.status)


def create_app(config: ScannerConfig) -> web.Application:
    store = VerdictStore(config.verdict_database)
    clamd = ClamdClient(config.clamd_host, config.clamd_port, timeout=config.clamd_timeout_seconds)
    app = web.Application(middlewares=[errors_and_cors], client_max_size=BODY_LIMIT)
    app[SCANNER] = Scanner(
        clamd, SignatureFiles(config.signature_dir), store, config.clamd_timeout_seconds
    )
    app[FETCHER] = MediaFetcher(
        config.synapse_url, config.max_file_size_bytes, config.fetch_timeout_seconds, AccessCache()
    )
    app[DECRYPTOR] = BodyDecryptor(config.body_key_file)
    app[SCANS] = asyncio.Semaphore(config.concurrent_scans)

    async def lifecycle(app: web.Application):
        await app[FETCHER].start()
        yield
        await app[FETCHER].close()
        store.close()

    app.cleanup_ctx.append(lifecycle)
    media = "{server_name}/{media_id}"
    app.add_routes(
        [
            web.get(f"{PREFIX}/public_key", public_key),
            web.get(f"{PREFIX}/scan/{media}", scan),
            web.get(f"{PREFIX}/download/{media}", download),
            web.get(f"{PREFIX}/thumbnail/{media}", thumbnail),
            web.post(f"{PREFIX}/scan_encrypted", scan_encrypted),
            web.post(f"{PREFIX}/download_encrypted", download_encrypted),
            web.get("/health", health),
        ]
    )
    return app
