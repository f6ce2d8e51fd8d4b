"""The README's benchmark commands are valid invocations: each names a script in bench/ that
parses the options the README gives it (run with ``--help``; the benchmarks themselves take
minutes to hours and print figures rather than assert them, so they are not run here)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _benchmark_commands() -> list[list[str]]:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Benchmarks\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start:end if end > 0 else None]
    commands = []
    for line in section.splitlines():
        match = re.match(r"\s{4}\.venv/bin/python (bench/\S+\.py)((?: --?[\w-]+(?: [^\s#-]\S*)?)*)", line)
        if match:
            commands.append([match.group(1), *match.group(2).split()])
    return commands


def test_every_benchmark_the_readme_lists_parses_the_options_it_is_given():
    commands = _benchmark_commands()
    scripts = {command[0] for command in commands}
    # every runnable script in bench/ is listed (helper modules have no __main__), and only those
    runnable = {f"bench/{path.name}" for path in (REPO / "bench").glob("*.py") if "__main__" in path.read_text()}
    assert scripts == runnable
    for script, *arguments in commands:
        done = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, (script, done.stderr[-2000:])
        assert "usage:" in done.stdout, script
        for option in (argument for argument in arguments if argument.startswith("--")):
            assert option in done.stdout, f"README passes {option} to {script}, which does not take it"
