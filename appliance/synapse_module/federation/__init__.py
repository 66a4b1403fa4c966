# SPDX-License-Identifier: AGPL-3.0-or-later
"""Federation: who users of other servers are here (peers and their roles), and the rules on
invitations and joins across servers."""
