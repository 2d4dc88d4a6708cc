"""Propensity and next-best-action models (issue 4)."""
