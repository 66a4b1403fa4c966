# SPDX-License-Identifier: AGPL-3.0-or-later
"""The content scanner: the matrix-content-scanner API in front of Synapse's media and clamd.

Clients ask it before they show a file, plain or end-to-end encrypted (it decrypts the
attachment with the key they send, scans it, and never keeps the key). Run it with
`python -m appliance.content_scanner --config <state_dir>/content-scanner/content-scanner.json`.

Why it keeps its own verdicts (verdict_store.py: a SQLite file in its state directory) rather
than the Synapse module's table in Synapse's database, where ARCHITECTURE.md puts scan verdicts:

* It is a separate, internet-facing process (nginx sends it /_matrix/media_proxy), which may
  run on another host. It reaches Synapse only as a client, with each user's own token, and
  holds no credential of its own. Sharing the module's table would take database credentials
  or a server-admin token: the access a bug in this process must never reach.
* Most of what it caches cannot be in the module's table anyway: verdicts on the plaintext of
  encrypted attachments (Synapse only ever holds, and scans, their ciphertext), and attachment
  identities (a hash of each file's key material) that answer a known attachment without
  fetching and decrypting it again.
* It is read on every request: a local SQLite read, not a round trip through Synapse.

Both stores are keyed the same way (content SHA-256 and signature version) and both forget
every verdict when the signatures change. Losing this one costs re-scans, never a wrong answer:
it needs no backup, and deleting verdicts.sqlite3 while the scanner is stopped clears it.
"""
