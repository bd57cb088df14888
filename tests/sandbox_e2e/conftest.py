"""A second sandbox for the tests, on shifted ports and its own run directory, so a user's sandbox is untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_PORT_OFFSET = 1000
TEST_RUN_DIR = Path("/tmp/hami-e2e-sandbox-pytest")


def sandbox_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HAMI_E2E_PORT_OFFSET": str(TEST_PORT_OFFSET), "HAMI_E2E_SANDBOX_DIR": str(TEST_RUN_DIR),
            **extra}


def sandbox_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=REPO, env=env or sandbox_env(),
                          capture_output=True, text=True, timeout=timeout)


@contextmanager
def short_folder() -> Iterator[Path]:
    """A fresh folder with a short path under /tmp for a sandbox's run directory: its node roots hold unix sockets,
    whose path must fit in 107 bytes, and pytest's tmp_path grows with every session on a machine
    (/tmp/pytest-of-root/pytest-132/...). Removed afterwards unless something is still mounted in it."""
    folder = Path(tempfile.mkdtemp(prefix="he2e-"))
    try:
        yield folder
    finally:
        mounts = Path("/proc/self/mounts").read_text()
        if f" {folder}/" not in mounts:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """`short_folder` for one test (instead of tmp_path where a sandbox runs)."""
    with short_folder() as folder:
        yield folder


@pytest.fixture(scope="session")
def sandbox():
    """A running test sandbox; yields its kubeconfig path and stops it at the end of the session."""
    result = sandbox_cli("up")
    assert result.returncode == 0, f"sandbox up failed:\n{result.stderr}"
    yield TEST_RUN_DIR / "kubeconfig"
    sandbox_cli("down")


@pytest.fixture(scope="session")
def api(sandbox):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(sandbox), client_configuration=configuration)
    return client.ApiClient(configuration)
