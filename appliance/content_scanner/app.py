"""The HTTP API (matrix-content-scanner's), on aiohttp.

GET  /_matrix/media_proxy/unstable/public_key
GET  /_matrix/media_proxy/unstable/{scan,download,thumbnail}/{server_name}/{media_id}
POST /_matrix/media_proxy/unstable/{scan_encrypted,download_encrypted}  {"file": EncryptedFile}
     (or {"encrypted_body": {...}}: the same body, encrypted to the public key)
GET  /health  (ours: clamd reachable, signature version, counters)

Errors are ``{"reason": CODE, "info": text}`` (see errors.py). A file is only ever sent after
a clean verdict; the download_encrypted answer is the ciphertext, which the client decrypts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from aiohttp import web

from appliance.clamd import ClamdClient
from appliance.clamd_signatures import SignatureFiles, SignatureState
from appliance.content_scanner.attachment import EncryptedFile, parse_encrypted_file
from appliance.content_scanner.body_crypto import BodyDecryptor
from appliance.content_scanner.config import ScannerConfig
from appliance.content_scanner.errors import ErrCode, ScannerError, malformed
from appliance.content_scanner.media_fetch import FetchedMedia, MediaFetcher
from appliance.content_scanner.media_ref import MediaRef
from appliance.content_scanner.scanner import Scanner
from appliance.content_scanner.verdict_store import Verdict, VerdictStore

logger = logging.getLogger(__name__)

PREFIX = "/_matrix/media_proxy/unstable"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
}
SCANNER = web.AppKey("scanner", Scanner)
FETCHER = web.AppKey("fetcher", MediaFetcher)
DECRYPTOR = web.AppKey("decryptor", BodyDecryptor)


def _not_clean(verdict: Verdict) -> ScannerError:
    return ScannerError(403, ErrCode.NOT_CLEAN, _verdict_info(verdict))


def _verdict_info(verdict: Verdict) -> str:
    return "File is clean" if verdict.clean else f"***VIRUS DETECTED*** ({verdict.signature})"


def _media(request: web.Request) -> MediaRef:
    return MediaRef.from_parts(request.match_info["server_name"], request.match_info["media_id"])


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
    scanner, media = request.app[SCANNER], _media(request)
    state = await scanner.signature_state()
    fetched = await request.app[FETCHER].download(media, _authorization(request))
    _, verdict = await scanner.content_verdict(fetched.content, state)
    return web.json_response({"clean": verdict.clean, "info": _verdict_info(verdict)})


async def download(request: web.Request) -> web.Response:
    scanner, media = request.app[SCANNER], _media(request)
    state = await scanner.signature_state()
    fetched = await request.app[FETCHER].download(media, _authorization(request))
    return await _send_if_clean(scanner, fetched, fetched.content, state)


async def thumbnail(request: web.Request) -> web.Response:
    scanner, media = request.app[SCANNER], _media(request)
    state = await scanner.signature_state()
    fetched = await request.app[FETCHER].thumbnail(media, request.query, _authorization(request))
    return await _send_if_clean(scanner, fetched, fetched.content, state)


async def scan_encrypted(request: web.Request) -> web.Response:
    file = await _encrypted_file(request)
    scanner = request.app[SCANNER]
    state = await scanner.signature_state()

    async def fetch() -> bytes:
        return (await request.app[FETCHER].download(file.media, _authorization(request))).content

    verdict = await scanner.attachment_verdict(file, state, fetch)
    return web.json_response({"clean": verdict.clean, "info": _verdict_info(verdict)})


async def download_encrypted(request: web.Request) -> web.Response:
    file = await _encrypted_file(request)
    scanner = request.app[SCANNER]
    state = await scanner.signature_state()
    fetched = await request.app[FETCHER].download(file.media, _authorization(request))
    return await _send_if_clean(scanner, fetched, file.decrypt(fetched.content), state)


async def _send_if_clean(
    scanner: Scanner, fetched: FetchedMedia, scanned: bytes, state: SignatureState
) -> web.Response:
    """Send what was fetched, once `scanned` (it, or its plaintext) has a clean verdict."""
    _, verdict = await scanner.content_verdict(scanned, state)
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
    except web.HTTPNotFound:
        response = web.json_response(
            {"reason": ErrCode.NOT_FOUND, "info": "No such endpoint"}, status=404
        )
    except web.HTTPMethodNotAllowed as error:
        response = web.json_response(
            {"reason": ErrCode.UNKNOWN, "info": f"Use {', '.join(sorted(error.allowed_methods))}"},
            status=405,
        )
    except Exception:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        response = web.json_response(
            {"reason": ErrCode.UNKNOWN, "info": "Internal Server Error"}, status=500
        )
    response.headers.update(CORS_HEADERS)
    return response


def create_app(config: ScannerConfig) -> web.Application:
    store = VerdictStore(config.verdict_database)
    clamd = ClamdClient(config.clamd_host, config.clamd_port, timeout=config.clamd_timeout_seconds)
    app = web.Application(middlewares=[errors_and_cors], client_max_size=1 << 20)
    app[SCANNER] = Scanner(
        clamd, SignatureFiles(config.signature_dir), store, config.clamd_timeout_seconds
    )
    app[FETCHER] = MediaFetcher(
        config.synapse_url, config.max_file_size_bytes, config.fetch_timeout_seconds
    )
    app[DECRYPTOR] = BodyDecryptor(config.body_key_file)

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
