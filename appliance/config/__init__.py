# SPDX-License-Identifier: AGPL-3.0-or-later
"""Settings and rendering: `appliance.yaml`'s model, the one renderer, where files live, preflight
checks, secrets on disk.
"""
