"""The `conductor` command's first code: the console script and `python -m conductor`.

Importing conductor's CLI takes a moment (asyncio, the config schema, aiohttp's parts
for some actions), and Ctrl-C in that moment, or while the arguments are read, would
print a KeyboardInterrupt traceback. Nothing has been started then, so there is
nothing to stop: one line and the documented status for SIGINT. From then on the run's
own signal handling answers Ctrl-C."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from conductor.errors import EXIT_SIGINT  # small: the window before main() stays short


def main() -> NoReturn:
    try:
        from conductor import cli

        arguments = cli.read_arguments(sys.argv[1:])
    except KeyboardInterrupt:
        sys.stderr.write("conductor: interrupted before anything was started\n")
        sys.stderr.flush()
        os._exit(EXIT_SIGINT)
    cli.leave(cli.act(*arguments))


if __name__ == "__main__":
    main()
