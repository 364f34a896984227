"""Genesis: the FastAPI application these test suites exercise (auth, businesses, coaching)."""
