# SPDX-License-Identifier: AGPL-3.0-or-later
"""Query-string arguments of the module's endpoints, each refusal a 400 ``M_INVALID_PARAM``
that names the argument and says what it must be."""

from __future__ import annotations

from typing import cast

from synapse.module_api import SynapseRequest
from synapse.module_api.errors import Codes, SynapseError


def query_values(request: SynapseRequest, name: str) -> list[bytes]:
    """Every value of a query-string argument, raw (Twisted keeps them as bytes)."""
    args = cast("dict[bytes, list[bytes]] | None", request.args)
    return (args or {}).get(name.encode("ascii"), [])


def string_arg(request: SynapseRequest, name: str, default: str = "", max_length: int = 256) -> str:
    values = query_values(request, name)
    if not values:
        return default
    try:
        value = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise SynapseError(400, f"{name} must be UTF-8 text", Codes.INVALID_PARAM) from None
    if len(value) > max_length:
        raise SynapseError(
            400, f"{name} must be at most {max_length} characters", Codes.INVALID_PARAM
        )
    return value


# Below PostgreSQL's bigint (2**63 - 1) with room for additions such as offset + limit; a
# larger value would overflow in the database (or in SQLite's driver) and answer 500.
MAX_INTEGER = 2**62


def integer_arg(
    request: SynapseRequest, name: str, default: int, minimum: int, maximum: int = MAX_INTEGER
) -> int:
    text = string_arg(request, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SynapseError(400, f"{name} must be an integer", Codes.INVALID_PARAM) from None
    if not minimum <= value <= maximum:
        raise SynapseError(
            400, f"{name} must be at least {minimum} and at most {maximum}", Codes.INVALID_PARAM
        )
    return value
