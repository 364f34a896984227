"""A small FastAPI app in the shape of the official full-stack template: settings from
the environment, SQLAlchemy async on asyncpg, Alembic, a seeded first superuser.

It is not Genesis and imports nothing of it: it stands for a project nobody here wrote,
run by conductor exactly as that project's docker compose would run it.
"""
