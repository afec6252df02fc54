"""The README's JSON examples are what the programs print (issue 18): each example's
command, as the README writes it, is run on the real clip with the README's own
watchlist, and every line of the example is compared with the real output (keys and
their order, and values rounded to the digits the README shows; the timings of a run
only by kind)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import Sandbox
from tests.support.data import DEBATE, LFW
from tests.support.readme import (
    between,
    code_blocks,
    code_spans,
    differences,
    json_example,
    readme,
)

TIMINGS = {"seconds", "fps", "stage_seconds"}
"""What the README says varies from run to run (this machine's speed)."""


def json_examples() -> list[tuple[str, list[str]]]:
    """Each JSON example in the README (a code block of lines that are all objects) with
    the command it shows the output of: the last `...--json` code span before it."""
    text = readme()
    found = []
    for block in code_blocks(text):
        lines = block.strip().splitlines()
        if not all(line.startswith("{") for line in lines):
            continue
        before = text[: text.index(block)]
        commands = [span for span in code_spans(before) if span.endswith("--json")]
        assert commands, f"README.md shows a JSON example without its command:\n{block}"
        found.append((commands[-1], lines))
    return found


def readme_watchlist(folder: Path) -> None:
    """The watchlist folder the README draws (its ``watchlist/`` tree), made of the LFW
    photos it names."""
    tree = next(block for block in code_blocks(readme()) if block.startswith("watchlist/\n"))
    for line in tree.splitlines()[1:]:
        subject, *photos = line.split()
        assert subject.endswith("/"), f"not a subject folder: {line!r}"
        assert photos, f"no photos in {line!r}"
        for photo in photos:
            source = LFW / subject.rstrip("/") / photo
            assert source.is_file(), f"the README's watchlist names {photo}, which LFW lacks"
            (folder / subject / photo).parent.mkdir(parents=True, exist_ok=True)
            (folder / subject / photo).symlink_to(source)


def debate_and_watchlist(cwd: Path) -> None:
    """`debate.mp4` is the debate clip the README describes (its first 17 seconds, from
    C-SPAN2), beside the README's watchlist."""
    scan_section = between(readme(), "## Scanning a video", "## The stored watchlist")
    assert "2020 US presidential debate" in scan_section
    (cwd / "debate.mp4").symlink_to(DEBATE)
    readme_watchlist(cwd / "watchlist")


REPRODUCED: dict[str, Callable[[Path], None]] = {
    "watchkeeper scan debate.mp4 --watchlist watchlist/ --json": debate_and_watchlist,
}
"""Each README command with a JSON example, and what its working folder must hold."""


EXAMPLES = json_examples()


@pytest.mark.parametrize(("command", "example"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_a_json_example_is_what_the_command_prints(
    command: str, example: list[str], sandbox: Sandbox
) -> None:
    assert command in REPRODUCED, (
        f"README.md shows the JSON output of `{command}`, which this test does not know "
        "how to run: add it to REPRODUCED in tests/e2e/test_readme_examples.py"
    )
    REPRODUCED[command](sandbox.cwd)
    env = sandbox.env()
    # The shell the README's reader has after `source .venv/bin/activate`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin"
    env.pop("UV_RUN_RECURSION_DEPTH", None)
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=sandbox.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip().splitlines()
    assert len(printed) == len(example), (
        f"`{command}` printed {len(printed)} lines, the README shows {len(example)}:\n"
        + done.stdout
    )
    problems = []
    for number, (shown, real) in enumerate(zip(example, printed, strict=True), start=1):
        problems += [
            f"line {number}: {problem}"
            for problem in differences(json_example(shown), json.loads(real), TIMINGS)
        ]
    assert not problems, "\n".join([f"`{command}`:", *problems, "it printed:", done.stdout])


def test_the_readme_says_which_numbers_vary() -> None:
    """The timings compared only by kind are the ones the README says vary."""
    scan_section = between(readme(), "## Scanning a video", "## The stored watchlist")
    sentence = re.search(r"[^.]*vary from run to run[^.]*\.", " ".join(scan_section.split()))
    assert sentence is not None, "the README no longer says which numbers vary"
    assert set(code_spans(sentence.group(0))) == TIMINGS, sentence.group(0)
