"""The sandbox as the target: when it cannot start, the preflight verdict names the component and its log, the
first test fails with it and every other test skips, within 10 s."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from robot.api import ExecutionResult

from .conftest import REPO, TEST_PORT_OFFSET

OFFSET = str(TEST_PORT_OFFSET + 16000)
RUN_DIR = Path("/tmp/hami-e2e-sandbox-nostart")


def test_a_sandbox_that_cannot_start_names_the_component_and_its_log(tmp_path):
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir()
    (RUN_DIR / "etcd").write_text("a file where etcd's data directory belongs\n")  # etcd exits at once
    env = {**os.environ, "HAMI_E2E_PORT_OFFSET": OFFSET, "HAMI_E2E_SANDBOX_DIR": str(RUN_DIR),
           "HAMI_E2E_ARCHIVE": "off"}
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "robot", "--outputdir", str(tmp_path), "--console", "none",
                        "suites/10__vgpu_pods.robot"], cwd=REPO, env=env, check=False)
        elapsed = time.monotonic() - started
    finally:
        subprocess.run([sys.executable, "-m", "sandbox", "down"], cwd=REPO, env=env, capture_output=True)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    tests = list(ExecutionResult(str(tmp_path / "output.xml")).suite.all_tests)
    (failed,) = [t for t in tests if t.status == "FAIL"]
    assert "Preflight failed: The sandbox did not start: etcd exited with code 1 while starting; log: " in failed.message
    assert f"{RUN_DIR}/logs/etcd.log" in failed.message and "the logs of the failed start are kept in" in failed.message
    assert all(t.status == "SKIP" for t in tests if t is not failed)
    assert elapsed < 10
