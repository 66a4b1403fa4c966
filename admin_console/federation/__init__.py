# SPDX-License-Identifier: AGPL-3.0-or-later
"""Federation: the peers of this appliance's network and their health as Synapse sees it."""

from admin_console.federation.views import bp

__all__ = ["bp"]
