"""Write the CRD manifests from the models, or (`--check`) fail if the committed ones drifted.

facecast-gen-crds            # rewrite crds/manifests, charts/facecast/crds and the chart's
                             # worker-status admission policy (charts/facecast/files)
facecast-gen-crds --check    # exit 1 listing every stale file
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from avatar_crds.crd import GENERATED_HEADER, render
from avatar_crds.kinds import ALL_KINDS
from avatar_crds.policy import policy_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIRS = (Path("crds/manifests"), Path("charts/facecast/crds"))
# The spec of the chart's ValidatingAdmissionPolicy; templates/admission-policy.yaml wraps it.
POLICY_SPEC_FILE = Path("charts/facecast/files/worker-status-policy.yaml")


def expected_files(root: Path) -> dict[Path, str]:
    crds = {
        root / directory / f"{kind.crd_name}.yaml": render(kind)
        for directory in OUTPUT_DIRS
        for kind in ALL_KINDS
    }
    spec = yaml.safe_dump(policy_spec(), sort_keys=False, width=100)
    return {**crds, root / POLICY_SPEC_FILE: GENERATED_HEADER + spec}


def stale_files(root: Path) -> list[Path]:
    """Generated files that are missing, differ from the models, or are left over."""
    expected = expected_files(root)
    stale = [path for path, text in expected.items() if _read(path) != text]
    for directory in OUTPUT_DIRS:
        stale += sorted(p for p in (root / directory).glob("*.yaml") if p not in expected)
    return stale


def write(root: Path) -> list[Path]:
    stale = stale_files(root)
    expected = expected_files(root)
    for path in stale:
        if path in expected:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(expected[path])
        else:
            path.unlink()
    return stale


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on drift instead of writing")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.root)
        for path in stale:
            print(f"stale: {path.relative_to(args.root)}", file=sys.stderr)
        if stale:
            print("run `uv run facecast-gen-crds` to regenerate", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.root):
        print(f"wrote {path.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
