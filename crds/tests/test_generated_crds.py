"""The committed CRD manifests are exactly what the models generate, and they are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from avatar_crds.crd import crd_manifest
from avatar_crds.enums import ALL_REASONS, Phase
from avatar_crds.generate import REPO_ROOT, main, stale_files
from avatar_crds.kinds import ALL_KINDS, AVATAR_SESSION
from avatar_crds.schema import SchemaError, structural_schema


def test_committed_manifests_match_the_models() -> None:
    stale = stale_files(REPO_ROOT)
    assert stale == [], f"regenerate with `uv run facecast-gen-crds`: {stale}"


def test_check_mode_detects_drift(tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    victim = tmp_path / "charts/facecast/crds/avatarsessions.facecast.io.yaml"
    victim.write_text(victim.read_text().replace("maxLength: 63", "maxLength: 64"))
    assert main(["--check", "--root", str(tmp_path)]) == 1
    (tmp_path / "crds/manifests/leftover.yaml").write_text("{}")
    assert tmp_path / "crds/manifests/leftover.yaml" in stale_files(tmp_path)


def _session_schema() -> dict[str, Any]:
    path = REPO_ROOT / "crds/manifests/avatarsessions.facecast.io.yaml"
    crd = yaml.safe_load(path.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_phase_enum_round_trips_through_the_generated_crd() -> None:
    status = _session_schema()["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [phase.value for phase in Phase]
    assert [Phase(value) for value in status["phase"]["enum"]] == list(Phase)
    assert sorted(status["reason"]["enum"]) == sorted(ALL_REASONS)


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda kind: kind.kind)
def test_schemas_are_structural(kind: Any) -> None:
    schema = crd_manifest(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        untyped_any = node.get("x-kubernetes-preserve-unknown-fields") is True
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        assert "type" in node or untyped_any or int_or_string, f"{path} has no type"
        # The API server refuses an int-or-string node that also names a type.
        assert not (int_or_string and "type" in node), path
        assert "$ref" not in node, path
        assert "anyOf" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "title" not in node, path


def test_printer_columns_and_names() -> None:
    crd = crd_manifest(AVATAR_SESSION)
    version = crd["spec"]["versions"][0]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == ["Phase", "Avatar", "Quality", "Age", "First Frame"]
    assert crd["spec"]["names"]["shortNames"] == ["avs"]
    assert crd["spec"]["names"]["categories"] == ["facecast"]
    assert version["subresources"] == {"status": {}}


def test_cel_rules_are_carried_into_the_schema() -> None:
    spec = _session_schema()["properties"]["spec"]
    rules = [v["rule"] for v in spec["properties"]["transport"]["x-kubernetes-validations"]]
    assert any("self.type == 'livekit'" in rule for rule in rules)
    metadata = spec["properties"]["metadata"]
    assert metadata["type"] == "object"
    assert metadata["x-kubernetes-preserve-unknown-fields"] is True
    assert metadata["maxProperties"] == 64
    assert spec["properties"]["idleTimeoutSeconds"]["nullable"] is True


def test_int_or_string_has_no_type_and_keeps_its_rule() -> None:
    from typing import Annotated

    from pydantic import BaseModel, WithJsonSchema

    rule = {"rule": "type(self) == int", "message": "m"}

    class Either(BaseModel):
        value: Annotated[
            int | str,
            WithJsonSchema(
                {"x-kubernetes-int-or-string": True, "x-kubernetes-validations": [rule]}
            ),
        ] = 1

    node = structural_schema(Either)["properties"]["value"]
    assert node == {"default": 1, "x-kubernetes-int-or-string": True,
                    "x-kubernetes-validations": [rule]}  # fmt: skip


def test_unsupported_union_is_refused() -> None:
    from pydantic import BaseModel

    class Mixed(BaseModel):
        value: int | str

    with pytest.raises(SchemaError, match="string enums"):
        structural_schema(Mixed)
