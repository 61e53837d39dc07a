"""`facecast-models`: check or prepare a model directory for the standard and pro tiers.

    facecast-models verify DIR      every published file present and matching manifest.json
    facecast-models manifest DIR    write manifest.json from the files in DIR (after download)
    facecast-models write-tiny DIR  a tiny random model in the published layout and formats
                                    (tests, the local stack; it moves its mouth, meaninglessly)

Exit status 0 when done, 1 with the file named and how to obtain it when not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from avatar_worker.neural import layout
from avatar_worker.neural.layout import ModelFilesError


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facecast-models", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("verify", "check DIR against its manifest.json"),
        ("manifest", "write DIR/manifest.json from the files in DIR"),
        ("write-tiny", "write a tiny random model to DIR"),
    ):
        commands.add_parser(name, help=text).add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    directory: Path = args.directory
    try:
        if args.command == "verify":
            layout.verify(directory, progress=lambda path: _say(f"checking {path}"))
            _say(f"{directory}: all {len(layout.FILES)} files match {layout.MANIFEST}")
        elif args.command == "manifest":
            entries = layout.write_manifest(directory)
            for path, entry in entries.items():
                _say(f"{path}  {entry['sha256']}  {entry['bytes']} bytes")
            _say(f"wrote {directory / layout.MANIFEST}")
        else:
            from avatar_worker.neural.checkpoint import write_random  # torch: only when needed
            from avatar_worker.neural.config import TINY

            directory.mkdir(parents=True, exist_ok=True)
            write_random(directory, TINY)
            _say(f"wrote a tiny random model and its {layout.MANIFEST} to {directory}")
    except ModelFilesError as exc:
        print(f"facecast-models: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
