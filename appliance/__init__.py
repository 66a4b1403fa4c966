"""The public-sector Matrix appliance: settings, config rendering, services, the Synapse module."""

__version__ = "0.1.0"
