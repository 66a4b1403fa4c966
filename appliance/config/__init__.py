"""Settings and rendering: `appliance.yaml`'s model, the one renderer, where files live, preflight
checks, secrets on disk.
"""
