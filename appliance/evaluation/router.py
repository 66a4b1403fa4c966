# SPDX-License-Identifier: AGPL-3.0-or-later
"""The evaluation router: what nginx does in production, for Synapse's workers on one machine.

`python -m appliance.evaluation.router <router.json> <host> <port>` listens on synapse.listen
and sends each request to the process the routing table names (`router.json` is rendered from
appliance.config.worker_routes, as the nginx site is), anything else to the main process. A
pool of several workers is chosen by the user part of the access token, as nginx's `hash`
does, so one user's syncs stay on one worker. Bodies stream both ways (uploads, long polls).
Loopback only, plain HTTP: evaluation never listens elsewhere.
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

# Hop-by-hop headers are the proxy's own business (RFC 9110, 7.6.1), never forwarded.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}
_USER = re.compile(r"^Bearer syt_([^_]+)_")
UNREACHABLE = "This part of the server is not running right now: try again in a moment"


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern
    methods: tuple[str, ...] | None
    members: tuple[str, ...]


class RoutingTable:
    def __init__(self, table: dict):
        self.main: str = table["main"]
        pools = table["pools"]
        self.routes = [
            Route(
                re.compile(route["pattern"]),
                tuple(route["methods"]) if route["methods"] else None,
                tuple(pools[route["upstream"]]),
            )
            for route in table["routes"]
        ]

    def target(self, method: str, path: str, authorization: str) -> str:
        """The base URL of the process that serves this request."""
        for route in self.routes:
            if route.methods is not None and method not in route.methods:
                continue
            if route.pattern.match(path):
                members = route.members
                if len(members) == 1:
                    return members[0]
                user = _USER.match(authorization)
                key = user.group(1) if user else authorization
                return members[zlib.crc32(key.encode()) % len(members)]
        return self.main


def make_app(table: RoutingTable) -> web.Application:
    async def client_session(app: web.Application):
        # No total timeout: /sync long-polls, and a large upload is scanned before the answer.
        app["client"] = ClientSession(timeout=ClientTimeout(total=None, sock_connect=10))
        yield
        await app["client"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        target = table.target(
            request.method, request.path, request.headers.get("Authorization", "")
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = request.host
        body = request.content if request.body_exists else None
        try:
            upstream = await request.app["client"].request(
                request.method,
                target + request.rel_url.raw_path_qs,
                headers=headers,
                data=body,
                allow_redirects=False,
                auto_decompress=False,
            )
        except OSError:
            return web.json_response({"errcode": "M_UNKNOWN", "error": UNREACHABLE}, status=502)
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(65536):
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=0)
    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main(argv: list[str] | None = None) -> int:
    config, host, port = (argv if argv is not None else sys.argv[1:])[:3]
    table = RoutingTable(json.loads(Path(config).read_text(encoding="utf-8")))
    web.run_app(make_app(table), host=host, port=int(port), print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
