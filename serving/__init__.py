"""The FastAPI scoring service (issue 5)."""
