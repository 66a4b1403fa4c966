"""Federation: who users of other servers are here (peers and their roles), and the rules on
invitations and joins across servers."""
