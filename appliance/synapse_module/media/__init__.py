"""Media: the upload-time antivirus scan and its verdict and quarantine tables."""
