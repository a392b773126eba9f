"""Append-only event log: ingestion and pandas readers."""
