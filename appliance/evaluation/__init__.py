"""The all-in-one evaluation appliance: its services, their supervision, `up`/`down`/`status`."""
