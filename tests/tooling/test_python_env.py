"""tools/bootstrap.sh: every checkout gets a cached Python environment of its own. The
workspace's packages are installed editable, pointing into one checkout, so two checkouts that
shared an environment would each run the code of whichever synced last."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def where_api_shim_is(python: str) -> Path:
    found = subprocess.run(
        [python, "-c", "import api_shim; print(api_shim.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


def test_a_second_checkout_leaves_this_one_running_its_own_code(tmp_path: Path) -> None:
    other = tmp_path / "other-checkout"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(other)], check=True)
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    synced = subprocess.run(
        ["bash", "-c", 'source tools/bootstrap.sh && echo "$UV_PROJECT_ENVIRONMENT"'],
        cwd=other,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    other_env = Path(synced.stdout.strip().splitlines()[-1])
    assert other_env.resolve() != Path(sys.prefix).resolve(), "one environment for both"
    try:
        assert where_api_shim_is(str(other_env / "bin" / "python")).is_relative_to(other)
        # This checkout's environment still runs this checkout's code.
        assert where_api_shim_is(sys.executable).is_relative_to(REPO_ROOT)
    finally:
        shutil.rmtree(other_env, ignore_errors=True)
