"""The content scanner: the matrix-content-scanner API in front of Synapse's media and clamd.

Clients ask it before they show a file, plain or end-to-end encrypted (it decrypts the
attachment with the key they send, scans it, and never keeps the key). Run it with
`python -m appliance.content_scanner --config <state_dir>/content-scanner/content-scanner.json`.
"""
