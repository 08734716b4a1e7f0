"""`arc25 <command>`: one subcommand per module in `arc25.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int`, and stays a thin layer over library functions. Bad input
(`UserError`) becomes one clear line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from arc25 import commands
from arc25.errors import UserError

log = logging.getLogger("arc25")


def _command_modules() -> dict[str, object]:
    modules = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        modules[info.name.replace("_", "-")] = importlib.import_module(f"arc25.commands.{info.name}")
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arc25",
        description="ARC Prize 2025 pipeline: search and learn with the BARC induction model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _command_modules().items():
        doc = (module.__doc__ or "").strip()
        cmd = sub.add_parser(name, help=module.HELP, description=doc or module.HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"arc25 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise
        # A path no check foresaw (a file removed or made unreadable mid-run...): still one line naming it.
        log.debug("%s", exc, exc_info=True)
        print(f"arc25 {args.command}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"arc25 {args.command}: interrupted", file=sys.stderr)
        return 130
