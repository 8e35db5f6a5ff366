"""README.md says what runs: the Quick start commands, the tour pasted into ``qmpsh --launch``,
the config example, the options and built-ins it names, and the pictures and links it shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from qmpsh import config
from qmpsh.cli import build_parser
from qmpsh.commands import BUILTINS
from tests.conftest import REPO, qmpsh_env, run_qmpsh

README = (REPO / "README.md").read_text()
QUICK_START = ["bash .ci/setup && .venv/bin/qmpsh --launch", "bash .ci/setup test && .venv/bin/python -m pytest"]


def section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert found, f"README has no '## {title}' section"
    return found.group(1)


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


# -- Quick start ---------------------------------------------------------------------------

def test_quick_start_commands_are_the_two_known_ones():
    assert [block.strip() for block in blocks(section("Quick start"), "sh")] == QUICK_START


def test_ci_runs_exactly_the_second_command():
    commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert commands == [QUICK_START[1]]


def test_first_command_opens_qmpsh_on_the_launched_qemu():
    """``.venv/bin/qmpsh --launch`` (the part after ``bash .ci/setup``), scripted."""
    qmpsh = REPO / ".venv" / "bin" / "qmpsh"
    if not qmpsh.exists():  # tests run from another environment: its own qmpsh
        qmpsh = Path(sys.executable).parent / "qmpsh"
    result = subprocess.run([str(qmpsh), "--launch"], input="query-status\n", capture_output=True, text=True,
                            timeout=120, env=qmpsh_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["return"]["status"] == "prelaunch"


def test_launch_example_runs_without_a_display():
    """The ``--launch -- QEMU-ARGS`` example of "Using it", on a machine with no display."""
    (line,) = [line for line in section("Using it").splitlines() if line.startswith("qmpsh --launch --")]
    argv = line.split("#")[0].split()[1:]
    env = qmpsh_env()
    env.pop("DISPLAY", None)
    result = run_qmpsh(*argv, stdin="query-status\n", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["return"]["status"] == "running"


# -- the tour ------------------------------------------------------------------------------

def test_tour_runs_in_qmpsh_launch(tmp_path):
    pasted = blocks(section("A tour"), "text")
    assert len(pasted) >= 4
    script = "".join(pasted)
    result = run_qmpsh("--launch", "--workdir", str(tmp_path), stdin=script)
    assert result.returncode == 0, result.stdout + result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines, nothing else
    # One reply per command sent: the pasted JSON echoes and replies were skipped, not sent.
    commands = [line for line in script.splitlines() if line.startswith("(QEMU) ")]
    documents = [doc for doc in out if isinstance(doc, dict)]  # /tree prints a list
    replies = [doc for doc in documents if "return" in doc]
    assert len(replies) == len(commands), result.stdout
    assert [doc["event"] for doc in documents if doc.get("event") in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_READY")] == [
        "BLOCK_JOB_COMPLETED", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED"]
    assert out[-2]["event"] == "SHUTDOWN" and out[-1] == {"return": {}}
    assert (tmp_path / "e.qcow2").exists()  # the mirror's target, made by QEMU in the work directory
    assert "error" not in result.stderr


# -- what the README names -----------------------------------------------------------------

def test_config_example_is_a_valid_config_file():
    (example,) = blocks(section("Configuration"), "toml")
    values = config.apply_to(build_parser(), config.parse(example, "README"), example, "README")
    assert {key.replace("-", "_") for key in config.KEYS} == set(values)


def test_every_option_named_exists():
    options = {option for action in build_parser()._actions for option in action.option_strings}
    # pip's, install's, man's, QEMU's
    not_ours = {"--user", "-Dm644", "-l", "-m", "-M", "-S", "-nodefaults", "-display"}
    named = set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", README)) - not_ours
    assert named - options == set()


def test_every_builtin_is_described():
    table = re.findall(r"^\| `/(\w+)", README, re.MULTILINE) + re.findall(r"`/(\w+)", README)
    assert set(BUILTINS) <= set(table)
    assert set(re.findall(r"^\| `/(\w+)", README, re.MULTILINE)) <= set(BUILTINS)


def test_links_and_pictures_resolve():
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert local, "README links to nothing local?"
    for target in local:
        assert (REPO / target.split("#")[0]).exists(), f"README links to missing {target}"
    pictures = sorted((REPO / "tests" / "pictures").glob("*.svg"))
    assert {p.name for p in pictures} == {"completion.svg", "events.svg", "job.svg"}
    for picture in pictures:
        assert f"tests/pictures/{picture.name}" in local, f"{picture.name} is not shown in README"
        root = ElementTree.parse(picture).getroot()
        assert root.tag.endswith("svg")
        assert ">(QEMU)<" in picture.read_text()  # a qmpsh screen, drawn as text
