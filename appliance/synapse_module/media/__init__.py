# SPDX-License-Identifier: AGPL-3.0-or-later
"""Media: the upload-time antivirus scan and its verdict and quarantine tables."""
