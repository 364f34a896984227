"""Throwaway PostgreSQL clusters for `kind = "postgres"` services: finding the server
binaries (binaries.py), making, starting and removing a run's cluster (clusters.py), and
the cache of initialised clusters a warm run copies instead of running initdb again
(template_cache.py)."""
