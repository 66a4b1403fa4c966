# SPDX-License-Identifier: AGPL-3.0-or-later
"""The evaluation Redis's one user, from the password the secrets store generated.

Redis reads its users from an ACL file (`--aclfile`), where a password may be given by its
SHA-256 (`#<hex>`): the file Redis reads never holds the password itself, and no command line
shows it (`--requirepass` would, in `ps`). Synapse's processes read the password from its own
0600 file (homeserver.yaml's redis.password_path).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from appliance.config.secrets_store import read_secret, write_private_file


def acl(password: str) -> str:
    """Redis's default user: on, this password only, every key, channel and command."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user default on #{digest} ~* &* +@all\n"


def write_acl(password_file: Path, acl_file: Path) -> bool:
    """Write the ACL file (0600) for the password in password_file; True if it changed."""
    content = acl(read_secret(password_file))
    try:
        if acl_file.read_text(encoding="utf-8") == content:
            return False
    except FileNotFoundError:
        pass
    write_private_file(acl_file, content)
    return True


def auth_command(password: str) -> bytes:
    """Redis's AUTH in its wire protocol (RESP), so any password byte is sent as it is."""
    secret = password.encode()
    return b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)
