"""``partimento --help`` and every subcommand's ``--help`` work and say what the README says:
the README's command table lists exactly the commands the program has, and every option a
subcommand's usage shows is described in its help."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support.project import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "partimento.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def commands() -> list[str]:
    out = run("--help")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    block = out.stdout.split("positional arguments:")[1].split("options:")[0]
    return re.findall(r"^    (\w[\w-]*)\s", block, re.M)


def test_the_readme_lists_every_command_and_no_other():
    names = commands()
    assert {"run", "demo", "harmonize", "train", "export", "evaluate", "ports", "service"} <= set(
        names
    )
    readme = (ROOT / "README.md").read_text()
    table = set(re.findall(r"^\| `partimento (\w[\w-]*)", readme, re.M))
    assert table == set(names), f"README table {sorted(table)} vs program {sorted(names)}"


@pytest.mark.parametrize("command", commands())
def test_every_subcommand_help_describes_its_options(command):
    out = run(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: partimento {command}")
    assert out.stdout.split("\n\n")[1].strip(), f"{command}: no description"
    from partimento.cli import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    undescribed = [
        a.option_strings[0]
        for a in sub.choices[command]._actions
        if a.option_strings and a.dest != "help" and not (a.help or "").strip()
    ]
    assert not undescribed, f"{command}: options without a description: {undescribed}"


@pytest.mark.parametrize("command", commands())
def test_minus_v_is_accepted_after_every_command(command):
    """``partimento COMMAND -v`` as the error messages say ("run with -v"), not only
    ``partimento -v COMMAND``: parsed with the command's required arguments filled in."""
    from partimento.cli import parser

    p = parser([command])
    sub = next(a for a in p._actions if a.dest == "command").choices[command]
    required = []
    for action in sub._actions:
        if not action.option_strings and action.dest != "help":
            required.append(next(iter(action.choices)) if action.choices else "x.mid")
        elif action.required:
            required += [action.option_strings[0], "out.mid"]
    args = p.parse_args([command, *map(str, required), "-v"])
    assert args.verbose is True
    assert p.parse_args([command, *map(str, required)]).verbose is False
    assert p.parse_args(["-v", command, *map(str, required)]).verbose is True


def test_minus_v_after_a_command_that_fails_still_fails_in_one_line(tmp_path):
    out = run("harmonize", str(tmp_path / "nope.mid"), "-o", str(tmp_path / "x.mid"), "-v")
    assert out.returncode == 1
    assert "unrecognized arguments" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith("nope.mid does not exist")


def test_version():
    out = run("--version")
    assert out.returncode == 0
    assert re.fullmatch(r"partimento \S+\n", out.stdout), out.stdout
