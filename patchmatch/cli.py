"""Command line: ``patchmatch <command> ...``. Logging handlers and progress bars are set here only."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

#: Modules that each expose ``add_parser(subparsers)`` registering one subcommand
#: (with ``set_defaults(func=callable(args) -> int | None)``).
COMMANDS: list[str] = [  # in the order --help lists them: reconstruction first, then the network's tools
    "patchmatch.commands.sfm",
    "patchmatch.commands.match_db",
    "patchmatch.commands.compare",
    "patchmatch.demo",
    "patchmatch.commands.match_pair",
    "patchmatch.commands.make_patches",
    "patchmatch.commands.train",
    "patchmatch.commands.evaluate",
    "patchmatch.commands.bench",
    "patchmatch.commands.quantize",
    "patchmatch.commands.export_onnx",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchmatch",
        description="Structure-from-motion with learned patch comparison (2ch-2stream, Zagoruyko & Komodakis, CVPR 2015).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        importlib.import_module(module).add_parser(sub)
    for command in sub.choices.values():  # module docstrings mark code with reST double backticks
        command.description = (command.description or "").replace("``", "")
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of one subcommand of :func:`build_parser`'s parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a job scheduler), raised in the main thread as Ctrl-C is:
    the run stops the same way (its report says "interrupted", its lock is released)."""


def _terminate(signum, frame) -> None:
    raise Terminated


#: Set by :func:`_interrupt`: a Ctrl-C arrived, even where a library swallowed its KeyboardInterrupt.
_SIGINT = threading.Event()


def _interrupt(signum, frame) -> None:
    """Ctrl-C as Python raises it, remembered: a KeyboardInterrupt in the middle of an import can be
    swallowed there and surface later as another error of the half-imported module."""
    _SIGINT.set()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The ``patchmatch`` command: exit code 0 on success, 2 on bad input (one line naming it), 130
    when interrupted (Ctrl-C, also while the libraries are still importing), 143 when terminated
    (SIGTERM, once the library call running then returns)."""
    _SIGINT.clear()
    try:
        return _main(argv)
    except Terminated:
        print("Terminated; rerun the same command to resume.", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as e:
        if _interrupted(e) or _SIGINT.is_set():  # Ctrl-C in a library's import: a later error of the half-imported module
            print("Interrupted; rerun the same command to resume.", file=sys.stderr)
            return 130
        raise


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()
        return 0
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command's own usage, not the top-level one
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="[%(asctime)s %(name)s %(levelname)s] %(message)s", datefmt="%H:%M:%S")
    from tqdm.contrib.logging import logging_redirect_tqdm

    import pycolmap  # noqa: F401  (its import installs glog's handler, which dumps a stack trace on SIGTERM)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # Python's own: ours raises the same
            signal.signal(signal.SIGINT, _interrupt)
    try:
        with logging_redirect_tqdm():  # log lines above the progress bars, not glued to them
            code = args.func(args)
    except (OSError, ValueError, ImportError) as e:  # missing/existing/unreadable files; bad values; a missing extra
        if _interrupted(e):
            raise KeyboardInterrupt from e
        print(f"patchmatch {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(code or 0)


def _interrupted(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes or contexts of ``error``."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
