"""Fraud scoring: the RiskScorer seam and its implementations."""
