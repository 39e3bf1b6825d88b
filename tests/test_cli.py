"""The command line as a user meets it: help text, hub names offline, progress in log files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

from tongues.cli import build_parser, main


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_help_shows_required_options_as_required_and_no_none_defaults():
    seen_required = 0
    for name, sub in _subparsers(build_parser()):
        text = sub.format_help()
        assert "(default: None)" not in text, name
        assert "(default: False)" not in text, name
        seen_required += text.count("(required)")
    assert seen_required >= 10  # e.g. data prepare --lang/--out, launch slurm --nodes
    help_text = dict(_subparsers(build_parser()))["data prepare"].format_help()
    assert "--lang LANG" in help_text and "(required)" in help_text.rsplit("--lang LANG", 1)[1].split("--", 1)[0]


@pytest.fixture
def offline_hub(monkeypatch):
    from tongues import hub

    monkeypatch.setattr(hub, "_checked", {})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    return hub


@pytest.mark.parametrize("argv, what", [
    (["generate", "--model", "someone/some-model", "hello"], "model 'someone/some-model'"),
    (["data", "prepare", "--lang", "ko", "hf:someone/corpus", "--out", "OUT"], "hf:someone/corpus"),
])
def test_hub_names_offline_fail_in_seconds_with_one_line(offline_hub, argv, what, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    start = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - start < 10
    assert err.startswith("error: ") and "\n" not in err
    assert what in err and "unreachable" in err and "Offline," in err


def test_hf_hub_offline_is_honoured_without_a_connection(monkeypatch):
    from tongues import hub

    monkeypatch.setattr(hub, "_checked", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubUnreachable, match="HF_HUB_OFFLINE is set"):
        hub.require_hub("model 'a/b'", "pass a directory")
    assert hub._checked == {}  # no connection was even tried


def test_progress_bars_print_lines_not_carriage_returns_off_a_terminal(monkeypatch):
    from tongues.progress import progress_bar

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("TONGUES_PROGRESS_INTERVAL", "0")
    out = io.StringIO()  # not a terminal
    bar = progress_bar(total=5, desc="work", file=out, disable=False)  # tqdm reads TQDM_DISABLE at import
    for _ in range(5):
        bar.update(1)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and text.count("\n") >= 2 and "work" in text and "5/5" in text
    monkeypatch.setenv("TONGUES_PROGRESS_INTERVAL", "3600")
    out = io.StringIO()
    bar = progress_bar(range(1000), desc="quiet", file=out, disable=False)
    for _ in bar:
        pass
    assert out.getvalue().count("\n") <= 3  # a long interval: the start and the end, not 1000 updates


def test_a_piped_run_writes_few_progress_lines(tmp_path):
    """The CLI under `> log`: the progress of data prepare is a handful of lines."""
    src = tmp_path / "c.txt"
    src.write_text("\n".join(f"이것은 {i}번째 문서입니다. 충분히 긴 문장을 여기에 적어 둡니다." for i in range(3000)),
                   encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    proc = subprocess.run([sys.executable, "-m", "tongues", "data", "prepare", "--lang", "ko", str(src),
                           "--out", str(tmp_path / "p")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and proc.stderr.count("\n") < 20
