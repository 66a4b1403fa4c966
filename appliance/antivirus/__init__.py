"""The antivirus client: clamd's protocol, which signatures it runs, and the verdict type."""
