# SPDX-License-Identifier: AGPL-3.0-or-later
"""Encrypted files: what clamd reports when it cannot look inside one, and a probe that asks it.

clamd cannot scan a password-protected archive (zip, 7z, rar) or an encrypted PDF. With
AlertEncryptedArchive/AlertEncryptedDoc (templates/clamav/clamd.conf.j2, off only when
`clamav.allow_encrypted_archives` is true) it reports such a file as `Heuristics.Encrypted.*`,
and the appliance refuses it like an infected one, with a message that says why. The probe
scans a tiny password-protected zip, so the health page says what clamd really does rather than
what a setting asked for.
"""

from __future__ import annotations

import base64

from appliance.antivirus.clamd import ClamdClient
from appliance.antivirus.verdict import Verdict

# clamd's heuristic names for encrypted content: Heuristics.Encrypted.Zip, .RAR, .7Zip, .PDF.
ENCRYPTED_SIGNATURE_PREFIX = "Heuristics.Encrypted."

# `zip -X -P probe probe.zip probe.txt` (ZipCrypto; probe.txt holds one harmless line).
ENCRYPTED_ARCHIVE_PROBE = base64.b64decode(
    "UEsDBAoACQAAALw8gl2BZaMYPgAAADIAAAAJAAAAcHJvYmUudHh0bmXxhr3o4ZW9j3ZEUqTEy0hRvECzQ8y8XQU0SCpzGZbv"
    "weqjqHvU+9rNmv9qhBl2q1jhKuH+U13liaNigN5QSwcIgWWjGD4AAAAyAAAAUEsBAh4DCgAJAAAAvDyCXYFloxg+AAAAMgAA"
    "AAkAAAAAAAAAAQAAAKSBAAAAAHByb2JlLnR4dFBLBQYAAAAAAQABADcAAAB1AAAAAAA="
)


def is_encrypted(verdict: Verdict) -> bool:
    """The file was refused because clamd could not look inside it, not for what it found."""
    return not verdict.clean and (verdict.signature or "").startswith(ENCRYPTED_SIGNATURE_PREFIX)


def encrypted_archives_refused(client: ClamdClient) -> bool:
    """Whether clamd refuses a password-protected zip; raises ClamdUnavailable."""
    return is_encrypted(client.scan_bytes(ENCRYPTED_ARCHIVE_PROBE))
