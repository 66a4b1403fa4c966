# SPDX-License-Identifier: AGPL-3.0-or-later
"""The error answers of the matrix-content-scanner API: ``{"reason": CODE, "info": text}``."""

from __future__ import annotations

from enum import StrEnum


class ErrCode(StrEnum):
    UNKNOWN = "M_UNKNOWN"
    NOT_FOUND = "M_NOT_FOUND"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    TOO_LARGE = "M_TOO_LARGE"
    # The file was scanned and is not clean, or could not be scanned (we fail closed).
    NOT_CLEAN = "MCS_MEDIA_NOT_CLEAN"
    # Synapse could not be asked for the file, or answered with an error.
    REQUEST_FAILED = "MCS_MEDIA_REQUEST_FAILED"
    # The attachment, or the encrypted request body, could not be decrypted; clients fetch
    # the public key again and retry once.
    BAD_DECRYPTION = "MCS_BAD_DECRYPTION"
    MALFORMED_JSON = "MCS_MALFORMED_JSON"


class ScannerError(Exception):
    def __init__(self, status: int, reason: ErrCode, info: str):
        super().__init__(info)
        self.status = status
        self.reason = reason
        self.info = info

    def to_json(self) -> dict:
        return {"reason": str(self.reason), "info": self.info}


def malformed(info: str) -> ScannerError:
    return ScannerError(400, ErrCode.MALFORMED_JSON, info)


def bad_decryption(info: str) -> ScannerError:
    return ScannerError(403, ErrCode.BAD_DECRYPTION, info)


def not_scanned(reason: str) -> ScannerError:
    # 503 says "try again later" to monitoring and retrying clients; the reason code makes
    # every client that only knows the documented codes treat the file as not clean.
    return ScannerError(
        503,
        ErrCode.NOT_CLEAN,
        f"The antivirus could not scan this file ({reason}); it is withheld until it can be.",
    )
