"""The docker-compose deployment is valid and consistent with the repository.

There is no Docker engine on CI machines: the compose file is validated with the
`docker-compose config` client, and the Dockerfiles are checked against the tree.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose_config() -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("docker-compose is not installed (.ci/run installs it)")
        pytest.skip("docker-compose is not installed")
    quiet = subprocess.run([exe, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    # docker-compose 1.x renders YAML only.
    rendered = subprocess.run([exe, "config"], cwd=ROOT, capture_output=True, text=True, check=True)
    return yaml.safe_load(rendered.stdout)


def test_compose_file_is_valid_and_complete():
    config = _compose_config()
    services = config["services"]
    assert {"api", "worker-gpu", "worker-cpu", "redis", "postgres"} <= set(services)
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    assert "--appendonly" in services["redis"]["command"]
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for name in ("api", "worker-gpu", "worker-cpu"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert json.dumps(services[name]["command"]).startswith('["spectral-topics"')


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_copy_existing_paths(dockerfile):
    text = (ROOT / "docker" / dockerfile).read_text()
    sources = []
    for line in text.splitlines():
        match = re.match(r"\s*COPY\s+(.+)\s+\S+\s*$", line)
        if match:
            sources += match.group(1).split()
    assert sources, "no COPY lines found"
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile} copies missing path {source}"
