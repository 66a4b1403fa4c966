# SPDX-License-Identifier: AGPL-3.0-or-later
"""Federation: who users of other servers are here (peers and their roles), the rules on
invitations and joins across servers, and what the network shares: which server owns which
domain, which account holds an address, the agents' directory and the forums of the peers."""
