"""Experiments on generated checkout forms: definitions, assignment, exposure, stats engine."""

from typing import Any

__all__ = ["ExperimentAnalysis", "analyze"]


def __getattr__(name: str) -> Any:
    """``checkoutlab.experiments.analyze`` without importing the analysis stack eagerly."""
    if name in __all__:
        from checkoutlab.experiments import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'checkoutlab.experiments' has no attribute {name!r}")
