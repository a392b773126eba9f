"""Checkout Lab: an ML-optimized experimentation platform for payment checkouts."""

__version__ = "0.1.0"
