"""Dependency direction: the API never imports the numerical core's fitting code (it
enqueues by name), and a worker's parent process never imports gpu/ or cupy before its pool
forks (CUDA is not fork-safe)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_api_and_cli_do_not_import_gpu_code():
    loaded = _loaded_after("import app.main, app.cli, app.client\nfrom app.main import create_app")
    # gpu.errors (InvalidInput) is the one piece of gpu/ the API uses; the package loads lazily
    assert {m for m in loaded if m == "gpu" or m.startswith("gpu.")} <= {"gpu", "gpu.errors"}
    assert "cupy" not in loaded and "workers" not in loaded


def test_worker_parent_does_not_import_gpu_before_forking():
    loaded = _loaded_after("import workers.runner, workers.celery_app, workers.handlers")
    assert "cupy" not in loaded
    assert {m for m in loaded if m == "gpu" or m.startswith("gpu.")} <= {"gpu", "gpu.errors"}
