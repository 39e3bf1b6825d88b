"""The one `tongues` command. Thin: parses arguments, then calls stage functions.

Each area registers its subcommands in its own module (listed in COMMAND_MODULES) through
`register(commands)`; a subcommand is a parser plus a handler ``handler(args) -> int | None``.
User errors (TonguesError) are printed in one line with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable

from tongues.errors import TonguesError

# Modules that define `register(commands: Commands)`; a module not written yet is skipped.
COMMAND_MODULES = (
    "tongues.data.commands",
    "tongues.tokenizers.commands",
    "tongues.plan.commands",
    "tongues.lm.commands",
    "tongues.infer.commands",
    "tongues.instruct.commands",
    "tongues.distill.commands",
    "tongues.eval.commands",
)

GROUP_HELP = {
    "data": "prepare corpora (clean, filter, dedup, split, data card) and tokenize them",
    "tokenizer": "train SentencePiece tokenizers for a script and compare tokenizers",
    "scaling": "fit your language's own scaling law from a sweep of small runs",
    "launch": "write launch scripts for clusters (Slurm)",
    "encoder": "prompt encoders for image pipelines: distil into a frozen CLIP space, evaluate retrieval",
}

Handler = Callable[[argparse.Namespace], "int | None"]


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults that mean something: "(required)" for required options, nothing for None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required and action.option_strings:
            return text + " (required)"
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False \
                or action.default == [] or "%(default)" in text:
            return text
        return super()._get_help_string(action)


# argparse reads "-1e21" or "-1.2B" as an option unless it looks like a negative number; these do,
# so `--flops -1e21` reaches the option's own check ("must be a positive number").
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?[KkMmBbGgTtQq]?$")


def _accept_negative_numbers(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser._negative_number_matcher = _NEGATIVE_NUMBER
    return parser


class Commands:
    """Builds nested subcommands (`data prepare`, `plan`, ...) on the root parser."""

    def __init__(self, root: argparse.ArgumentParser) -> None:
        self._root = root.add_subparsers(dest="command", metavar="COMMAND")
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def add(self, path: str, help: str, handler: Handler, description: str | None = None) -> argparse.ArgumentParser:
        """Add the subcommand `path` ("plan" or "data prepare"); returns its parser for options."""
        *group, name = path.split()
        subparsers = self._group(group[0]) if group else self._root
        parser = subparsers.add_parser(
            name, help=help, description=description or help, formatter_class=_Formatter
        )
        parser.set_defaults(handler=handler)
        return _accept_negative_numbers(parser)

    def _group(self, name: str) -> argparse._SubParsersAction:
        if name not in self._groups:
            parser = self._root.add_parser(name, help=GROUP_HELP.get(name, ""), description=GROUP_HELP.get(name))
            parser.set_defaults(handler=lambda args, p=parser: _print_help(p))
            self._groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        return self._groups[name]


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _register_run(commands: Commands) -> None:
    p = commands.add(
        "run",
        "run a recipe's stages in order, skipping finished ones and resuming an interrupted one",
        _handle_run,
    )
    p.add_argument("recipe", help="recipe YAML file, e.g. recipes/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set models.ko.pretrain.lr=1e-3 (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="STAGE",
                   help="run only this stage (its inputs must be complete); repeatable")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="re-run this stage even if up to date ('all' for every stage); repeatable")


def _handle_run(args: argparse.Namespace) -> int:
    from tongues.run import main_run

    return main_run(args.recipe, args.overrides, args.only, args.force)


def build_parser() -> argparse.ArgumentParser:
    from tongues import __version__

    parser = argparse.ArgumentParser(
        prog="tongues",
        description="Build small language models for your own language, from raw text to generate().",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"tongues {__version__}")
    commands = Commands(parser)
    _register_run(commands)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue
            raise
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tongues.progress import quiet_library_bars

    quiet_library_bars()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except TonguesError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
