# SPDX-License-Identifier: AGPL-3.0-or-later
"""The antivirus client: clamd's protocol, which signatures it runs, and the verdict type."""
