# SPDX-License-Identifier: AGPL-3.0-or-later
"""Backups that restore: `appliance backup` and `appliance restore`, in both modes.

- `snapshot`: a consistent copy of the state directory's irreplaceable part, laid out as the
  state directory itself (Synapse's database through SQLite's backup API or pg_dump, the console's
  and the scanner's databases through SQLite's backup API, never their -wal/-shm; local media;
  secrets and keys; the settings file).
- `restic`: the encrypted, deduplicated repository (local or off the host) with retention.
- `runner`: one backup run (nothing half-written: a snapshot exists in the repository only when
  complete) and one restore (refused over a running appliance or a non-empty state directory;
  Synapse's one-time keys cleared as Synapse's backup documentation asks).
"""
