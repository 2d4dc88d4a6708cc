"""Point-in-time debtor histories and the Feast feature repository (issue 3)."""
