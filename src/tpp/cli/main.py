"""``tpp`` entry point: sub-command registration, ``--config`` handling, one-line errors.

Each command is a module ``tpp.cli.<module>`` exposing ``add_parser(subparsers)`` (returning the
parser it created, see :func:`tpp.cli.common.add_command`) and ``run(args) -> int``. To add a
command, create its module and list it in :data:`COMMAND_MODULES`.

Errors: a :class:`tpp.errors.TPPError` (and argparse misuse) prints exactly one line
``tpp: error: <message>`` on stderr and exits 2; Ctrl-C exits 130. Set ``TPP_DEBUG=1`` to get the
traceback instead. Under ``torchrun`` with several processes each rank that fails prints its own
line, tagged ``(rank N)``, and exits 2; torchrun then stops the other ranks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from types import ModuleType
from typing import Sequence

from tpp.cli.common import ArgumentParser, HelpFormatter, apply_config_file
from tpp.cli.config_file import apply_saved_run
from tpp.errors import TPPError

# order = order in `tpp --help`
COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "evaluate",  # the `tpp eval` command
    "info",
    "prune",
    "demo",
    "jsv",
    "report",
    "run",
    "bench",
    "export",
    "import_official",  # the `tpp import-official` command
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _import_command(name: str) -> ModuleType:
    return importlib.import_module(f"{__package__}.{name}")


def build_parser() -> tuple[ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and ``{command name: sub-parser}`` for every available command."""
    from tpp._version import __version__

    parser = ArgumentParser(
        prog="tpp",
        description="Trainability Preserving Pruning (Wang & Fu, ICLR 2023) for PyTorch CNNs.",
        epilog="Run `tpp COMMAND --help` for the options of a command.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"tpp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands: dict[str, argparse.ArgumentParser] = {}
    for module_name in COMMAND_MODULES:
        module = _import_command(module_name)
        before = set(subparsers.choices)
        created = module.add_parser(subparsers)
        added = [name for name in subparsers.choices if name not in before]
        sub = created if created is not None else subparsers.choices[added[0]]
        sub.set_defaults(_run=module.run)
        for name in added:
            commands[name] = subparsers.choices[name]
    return parser, commands


def _command_index(args_list: Sequence[str], commands: dict[str, argparse.ArgumentParser]) -> int | None:
    for i, token in enumerate(args_list):
        if not token.startswith("-"):
            return i if token in commands else None
    return None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    # read torchrun's variables directly: importing torch would slow down every usage error
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        return f"(rank {os.environ.get('RANK', '?')}) {text}"
    return text


def _resume_hint(args: argparse.Namespace | None) -> str:
    """``"; resume with: tpp prune --out DIR --resume"`` for an interrupted run that has a folder to resume."""
    import shlex
    from pathlib import Path

    out = getattr(args, "out", None)
    if out is None or not hasattr(args, "resume") or not (Path(out) / "config.json").is_file():
        return ""
    from tpp.models.specs import is_factory_spec

    model = getattr(args, "model", None)
    factory = f" --model {shlex.quote(model)}" if is_factory_spec(model) else ""  # a file may not name code to run
    return f"; resume with: tpp {args.command} --out {shlex.quote(str(out))} --resume{factory}"


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings as ``tpp: warning: <message>``: what to know, not the source line that raised it."""
    text = " ".join(str(message).split())
    text = text[len("tpp: ") :] if text.startswith("tpp: ") else text
    print(f"tpp: warning: {text}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tpp`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    with warnings.catch_warnings():  # the library's own warnings keep their form outside the command line
        warnings.showwarning = _one_line_warning
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(args_list: list[str]) -> int:
    args = None
    debug = os.environ.get("TPP_DEBUG", "").strip() not in ("", "0")
    try:
        parser, commands = build_parser()
        index = _command_index(args_list, commands)
        if index is not None:
            apply_config_file(commands[args_list[index]], args_list[index + 1 :])
            saved = apply_saved_run(commands[args_list[index]], args_list[index + 1 :])  # `--out DIR --resume` alone
        args = parser.parse_args(args_list)
        args._saved_run = saved if index is not None else {}  # the values a run's config.json gave
        args._argv = ["tpp", *args_list]  # the real invocation, also when main() is called in-process
        if getattr(args, "threads", None):  # --threads of add_runtime_args, for every command
            import torch

            torch.set_num_threads(args.threads)
        run = getattr(args, "_run", None)
        if run is None:
            parser.print_help()
            return EXIT_ERROR
        return int(run(args) or 0)
    except SystemExit as exit_:  # --help / --version
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"tpp: interrupted{_resume_hint(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (TPPError, OSError) as error:
        if debug:
            raise
        print(f"tpp: error: {_one_line(error)}", file=sys.stderr, flush=True)
        if getattr(error, "collective", False):  # only then is torch.distributed loaded and in use
            from tpp.distributed import report_together

            report_together(error)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
