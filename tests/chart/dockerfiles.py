"""A small Dockerfile reader: build arguments, stages, instructions and the final image's ENV
and USER.

Enough to check what the images are made of and to replay their dependency-install steps with
uv; tests/images builds them for real with a Docker engine.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from testbed.binaries import REPO_ROOT

DOCKERFILES = {
    "operator": REPO_ROOT / "operator" / "Dockerfile",
    "api": REPO_ROOT / "api_shim" / "Dockerfile",
    "worker": REPO_ROOT / "worker_image" / "Dockerfile",
}


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    flags: tuple[str, ...]  # --from=..., --mount=... (the leading --options)
    rest: str  # what follows the flags, continuation lines joined


@dataclass
class Stage:
    base: str  # the FROM reference, build arguments replaced by their defaults
    alias: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs, in order ($VAR references left as written)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.rest):
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    def user(self) -> str | None:
        users = self.all("USER")
        return users[-1].rest.strip() if users else None

    def exec_form(self, keyword: str) -> list[str] | None:
        found = self.all(keyword)
        if not found:
            return None
        value = json.loads(found[-1].rest)
        assert isinstance(value, list), f"{keyword} is not in exec form"
        return [str(item) for item in value]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current)
        current = ""
    if current:
        lines.append(current)
    return lines


def build_args(path: Path) -> dict[str, str]:
    """The ARGs declared before the first FROM (those a FROM may use), with their defaults."""
    declared: dict[str, str] = {}
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            break
        if keyword.upper() == "ARG":
            name, _, default = rest.strip().partition("=")
            declared[name] = default
    return declared


def _substitute(reference: str, args: dict[str, str], path: Path) -> str:
    def default(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in args, f"{path}: FROM uses ${name}, which no ARG before it declares"
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", default, reference)


def parse(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    args = build_args(path)
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        flags: list[str] = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        instruction = Instruction(keyword.upper(), tuple(flags), rest)
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.IGNORECASE)
            assert match, f"unreadable FROM in {path}: {line}"
            stages.append(Stage(_substitute(match.group(1), args, path), match.group(2)))
        elif instruction.keyword == "ARG" and not stages:
            continue  # a build argument for the FROM lines (build_args)
        else:
            assert stages, f"{path}: {keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def image_tag(reference: str) -> str | None:
    """The tag of `name:tag` (a registry port like host:5000/name does not count)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None
