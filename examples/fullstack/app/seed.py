"""Create the first superuser (the template's `initial_data.py`), idempotently.

`python -m app.seed` may run on every start: one INSERT ... ON CONFLICT DO NOTHING
against the unique index on lower(email), so two seeds at once, or a FIRST_SUPERUSER
written in another case, still leave exactly one account, and the existing password
is never overwritten.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.dialects.postgresql import insert

from app.db import make_engine
from app.models import User
from app.security import hash_password
from app.settings import Settings, from_environment


async def seed(settings: Settings) -> bool:
    """True when this call created the superuser, False when it already existed."""
    engine = make_engine(settings)
    try:
        async with engine.begin() as connection:
            created = await connection.scalar(
                insert(User)
                .values(
                    email=settings.first_superuser,
                    hashed_password=hash_password(
                        settings.first_superuser_password.get_secret_value()
                    ),
                    is_superuser=True,
                )
                .on_conflict_do_nothing()
                .returning(User.id)
            )
    finally:
        await engine.dispose()
    if created is None:
        print(f"seed: first superuser {settings.first_superuser} already exists", flush=True)
        return False
    print(f"seed: created first superuser {settings.first_superuser}", flush=True)
    return True


def main() -> None:
    asyncio.run(seed(from_environment("seed")))


if __name__ == "__main__":
    main()
