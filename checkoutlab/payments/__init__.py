"""Checkout sessions, confirm, gateways, idempotency and inventory."""
