"""The README's commands stay true: every `tongues ...` line in it parses with today's CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tongues.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8").replace("\\\n", " ")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("tongues ") and "--help" not in line:
                commands.append(line)
    return commands


COMMANDS = _readme_commands()


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command: str) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exit_:  # argparse exits 2 on an unknown flag or a missing argument
        pytest.fail(f"README command does not parse (exit {exit_.code}): {command}")
    assert callable(args.handler)
