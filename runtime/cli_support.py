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
MAX_THREADS = 4 * (os.cpu_count() or 1)   # --threads beyond this only oversubscribes the machine


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(modules: tuple[str, ...], extra: str, what: str) -> None:
    """QasrError naming the extra to install when one of `modules` (an optional extra's) is not installed."""
    if missing := missing_modules(modules):
        raise QasrError(f"{what} needs {', '.join(missing)}, which this install lacks: pip install \"qasr[{extra}]\"")


def require_at_start(modules: tuple[str, ...], extra: str, tool: str) -> None:
    """require() for a command's own imports, before click runs (even --help): one line and exit 2."""
    try:
        require(modules, extra, tool)
    except QasrError as exc:
        fail(str(exc))


def writable_dir(path, what: str = "the output directory") -> None:
    """Create `path` (and its parents) and prove a file can be written there, before any work; one line if not."""
    import tempfile
    from pathlib import Path

    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise QasrError(f"{what} {path} exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".qasr-probe-"):
            pass
    except OSError as exc:
        raise QasrError(f"cannot write to {what} {path}: {exc.strerror or exc}") from None


def writable_file(path, force: bool, what: str = "the output file") -> None:
    """`path` may be written (its folder exists or can be made, and is writable) and replaces nothing the user had
    unless `force`; checked before any work, one line if not."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise QasrError(f"{what} {path} is a directory")
    if path.exists() and not force:
        raise QasrError(f"{path} exists; pass --force to replace it")
    writable_dir(path.parent if str(path.parent) else Path("."), f"the folder of {what}")


def echo_out(text: str) -> None:
    """Print the result on standard output; a full disk or a closed file there is one error line, not a trace."""
    try:
        click.echo(text, nl=False)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # nothing more is tried at exit
        raise QasrError(f"cannot write to standard output: {exc.strerror or exc}") from None


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
