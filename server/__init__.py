"""OpenDSO server: the aiohttp application, its domain, store and protocol adapters."""

__version__ = "0.1.0"
