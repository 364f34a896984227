"""The application factory. `uvicorn genesis.main:app` serves it with settings from the
environment; tests call `create_app(Settings(...))` and override its dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from genesis.cache import make_cache
from genesis.db import make_engine, make_sessionmaker
from genesis.orchestrator import OrchestratorClient
from genesis.routes import auth, businesses, coaching, health
from genesis.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.orchestrator = OrchestratorClient(
            settings.orchestrator_url, settings.orchestrator_timeout
        )
        app.state.cache = make_cache(settings.redis_url, settings.cache_ttl_seconds)
        try:
            yield
        finally:
            await app.state.cache.aclose()
            await app.state.orchestrator.aclose()
            await engine.dispose()

    app = FastAPI(title="Genesis", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(businesses.router)
    app.include_router(coaching.router)
    return app


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 without FastAPI's echo of the input: a missing field would otherwise send the
    whole body back, password included."""
    errors = [
        {"loc": e.get("loc", ()), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content=jsonable_encoder({"detail": errors}),
    )


def __getattr__(name: str) -> FastAPI:
    # `genesis.main:app` is built on first access, so importing this module (as the
    # tests do) never reads the environment or warns about a missing SECRET_KEY.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
