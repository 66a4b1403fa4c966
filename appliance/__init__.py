# SPDX-License-Identifier: AGPL-3.0-or-later
"""The public-sector Matrix appliance: settings, config rendering, services, the Synapse module."""

__version__ = "0.1.0"
