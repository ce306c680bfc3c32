"""The command line as a user meets it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pesflow.cli import COMMANDS, main


def test_help_lists_the_commands(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    present = [name for name in COMMANDS if f"    {name} " in out]
    assert {"dft", "models", "demo"} <= set(present)


def test_console_script_and_exit_status_2() -> None:
    script = Path(sys.executable).with_name("pesflow")
    done = subprocess.run([str(script), "models", "--check", "no-such-model"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'no-such-model'" in lines[0]
    assert "available: chgnet" in lines[0]
