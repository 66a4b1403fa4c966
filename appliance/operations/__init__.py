# SPDX-License-Identifier: AGPL-3.0-or-later
"""What runs against a live box in both modes: diagnostics and the console's service account on
Synapse.
"""
