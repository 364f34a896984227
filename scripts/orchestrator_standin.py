#!/usr/bin/env python3
"""A stand-in for the external coaching orchestrator, for tests and the E2E stack.

    python scripts/orchestrator_standin.py --host 127.0.0.1 --port 5005

`POST /v1/answers` answers deterministically from the business and the question.
`POST /control` with {"mode": "ok" | "fail" | "slow" | "garbage", "delay": seconds}
changes how the next answers behave, so failures can be tested end to end; with
"match": TEXT it changes only the answers to questions that contain TEXT, so tests
running at once (xdist workers sharing one stack) each drive their own questions.
`GET /stats` counts the questions asked (`?match=TEXT`: those containing TEXT);
`GET /health` is the readiness probe.

On SIGTERM (or SIGINT) it stops like the other services of the stack (Uvicorn, Vite):
it finishes what is in flight, a slow answer included (at once, with a 503), then dies
of that signal, so its exit status says "stopped by SIGTERM" (143), not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal

from aiohttp import web

TIPS = (
    "write down the one number that tells you the week went well, and review it every Monday",
    "talk to five customers before building anything new",
    "raise prices for new customers first and watch what happens",
    "cut the offer you explain the longest; the clear one sells",
    "block two mornings a week for the work only you can do",
)


def answer_for(business: dict[str, str], question: str) -> str:
    digest = hashlib.sha256(f"{business.get('name', '')}|{question}".encode()).digest()
    tip = TIPS[digest[0] % len(TIPS)]
    name = business.get("name") or "your business"
    return f"For {name}: {tip}."


def make_app() -> web.Application:
    app = web.Application()
    state = {"mode": "ok", "delay": 30.0, "asked": 0}
    rules: dict[str, tuple[str, float]] = {}  # match -> (mode, delay)
    questions: list[str] = []
    stopping = asyncio.Event()

    async def on_shutdown(_app: web.Application) -> None:
        stopping.set()  # before the server waits for the handlers still running

    async def answers(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            business, question = body["business"], body["question"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected {business, question}"}, status=400)
        state["asked"] += 1
        questions.append(str(question))
        mode, delay = state["mode"], float(state["delay"])
        for match, (mode_for, delay_for) in rules.items():
            if match in str(question):
                mode, delay = mode_for, delay_for
        if mode == "fail":
            return web.json_response({"error": "the orchestrator is down (mode=fail)"}, status=503)
        if mode == "slow":
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                pass
            else:
                return web.json_response({"error": "the stand-in is stopping"}, status=503)
        if mode == "garbage":
            return web.Response(text="<html>not json</html>", content_type="text/html")
        return web.json_response({"answer": answer_for(business, question)})

    async def control(request: web.Request) -> web.Response:
        body = await request.json()
        mode = body.get("mode", "ok")
        if mode not in ("ok", "fail", "slow", "garbage"):
            return web.json_response({"error": f"unknown mode {mode!r}"}, status=400)
        delay = float(body.get("delay", state["delay"]))
        match = body.get("match")
        if match:
            rules[str(match)] = (mode, delay)
            return web.json_response({"mode": mode, "delay": delay, "match": match})
        state["mode"], state["delay"] = mode, delay
        if body.get("reset"):
            state["asked"] = 0
        return web.json_response({"mode": state["mode"], "delay": state["delay"]})

    async def stats(request: web.Request) -> web.Response:
        match = request.query.get("match")
        if match:
            return web.json_response({"asked": sum(match in q for q in questions)})
        return web.json_response(state)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_post("/v1/answers", answers)
    app.router.add_post("/control", control)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    app.on_shutdown.append(on_shutdown)
    return app


async def serve(host: str, port: int) -> signal.Signals:
    """Serve until SIGTERM or SIGINT; the signal that stopped it."""
    runner = web.AppRunner(make_app(), handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    received: list[signal.Signals] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda sig=sig: (received.append(sig), stop.set()))
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"======== Running on http://{host}:{port} ========", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return received[0]


def main() -> None:
    parser = argparse.ArgumentParser(description="coaching orchestrator stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5005)
    args = parser.parse_args()
    stopped_by = asyncio.run(serve(args.host, args.port))
    signal.signal(stopped_by, signal.SIG_DFL)
    os.kill(os.getpid(), stopped_by)


if __name__ == "__main__":
    main()
