"""What both command-line tools share: one clear line per error and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
import time

import click

from qasr.errors import QasrError

EXIT_USER_ERROR = 2     # bad input: audio, checkpoint, export directory, options
EXIT_FAILED_CHECK = 3   # the export ran but does not match the reference
EXIT_INTERNAL = 4       # a bug of ours


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func):
    """Turn QasrError into `error: ...` and exit 2; anything unexpected into one line and exit 4."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except QasrError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:   # the reader went away (`| head`): stop quietly, as other tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except MemoryError:
            fail("out of memory; try a smaller --batch-size", EXIT_INTERNAL)
        except Exception as exc:  # a bug of ours: keep it to one line unless asked for the trace
            if os.environ.get("QASR_DEBUG"):
                raise
            fail(f"unexpected {type(exc).__name__}: {exc} (set QASR_DEBUG=1 for the traceback)", EXIT_INTERNAL)

    return wrapper


class Progress:
    """Progress lines on stderr with the time elapsed, for the long jobs."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.monotonic() - self.start:7.1f}s] {message}", err=True)
