# SPDX-License-Identifier: AGPL-3.0-or-later
"""The agents' directory: who may find whom in user directory searches."""
