"""The ``pruneguard`` command: one Typer app, one file per command, errors as one line.

Exit codes: 0 success, 1 runtime failure, 2 bad input, 3 a policy rule failed.
"""

from __future__ import annotations

import logging
import sys

import typer
from typer.exceptions import Abort, Exit, TyperException

from pruneguard.cli import attack as _attack
from pruneguard.cli import demo as _demo
from pruneguard.cli import download as _download
from pruneguard.cli import export as _export
from pruneguard.cli import harden as _harden
from pruneguard.cli import listing as _listing
from pruneguard.cli import purify as _purify
from pruneguard.cli import scan as _scan
from pruneguard.cli import train as _train
from pruneguard.cli.common import State, setup_logging
from pruneguard.errors import PruneGuardError

__all__ = ["app", "main"]

app = typer.Typer(
    name="pruneguard",
    help="Harden neural networks by pruning: purify backdoors (ANP), evaluate robustness, vet untrusted models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    State.verbose, State.quiet, State.debug = verbose, quiet, debug
    setup_logging(verbose, quiet)


for module in (_train, _purify, _scan, _attack, _harden, _export, _demo, _listing, _download):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turn errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = app(args=args, standalone_mode=False, prog_name="pruneguard")
    except Exit as exc:
        return int(exc.exit_code)
    except Abort:
        sys.stderr.write("error: aborted\n")
        return 1
    except TyperException as exc:  # bad usage: unknown option, wrong type, missing argument
        if debug:
            raise
        sys.stderr.write(f"error: {exc.format_message().splitlines()[0]}\n")
        return 2
    except PruneGuardError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}\n")
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:  # a runtime failure, not the user's input
        if debug:
            raise
        logging.getLogger("pruneguard").debug("failure", exc_info=True)
        sys.stderr.write(
            f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(run with --debug for the traceback)\n"
        )
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
