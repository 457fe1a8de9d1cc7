"""keymoment: a real-time trigger engine for retail-bank event marketing."""

__version__ = "0.1.0"
