"""Experiments on generated checkout forms: definitions, assignment, exposure, stats engine."""
