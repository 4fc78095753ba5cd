"""imgtools: inspect, check, convert and debug linux-cr checkpoint images."""
__version__ = "0.1.0"
