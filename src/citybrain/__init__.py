"""citybrain: city-brain event stream processor (一网统管)."""

__version__ = "0.1.0"
