"""The demo store of ``make demo``: seed data, and a shop page using the widget like a merchant."""

from checkoutlab.demo.seed import seed

__all__ = ["seed"]
