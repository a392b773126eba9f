"""Merchants: API keys and the validated merchant configuration."""
