"""The committed JSON Schemas (`schemas/`) are exactly what the models generate, are valid
draft 2020-12 schemas, accept every valid example message and reject broken ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from service.contracts import MESSAGE_TYPES, SCHEMA_DIALECT, Message, json_schemas
from tests.unit.test_contracts import EXAMPLES, valid_examples

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
GENERATED = json_schemas()


def _committed(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))


def _validator(message_type: str) -> Draft202012Validator:
    return Draft202012Validator(
        _committed(f"{message_type}.v1.json"),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _kb_ingest(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("kb-ingest")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, check=False
    )


# -- drift -----------------------------------------------------------------------------------


def test_one_schema_file_per_message_type() -> None:
    committed = {p.name for p in SCHEMAS_DIR.glob("*.json")}

    assert committed == set(GENERATED)
    assert set(GENERATED) == {f"{name}.v1.json" for name in MESSAGE_TYPES}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_committed_schema_matches_the_model(name: str) -> None:
    assert _committed(name) == GENERATED[name], f"stale schemas/{name}: run `kb-ingest schemas`"


def test_schemas_check_command_passes_on_the_committed_files() -> None:
    result = _kb_ingest("schemas", "--check", "--dir", str(SCHEMAS_DIR))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_schemas_check_command_fails_on_a_stale_file(tmp_path: Path) -> None:
    for path in SCHEMAS_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    stale = _committed("control.v1.json")
    stale["properties"].pop("request_id")
    (tmp_path / "control.v1.json").write_text(json.dumps(stale, indent=2, sort_keys=True) + "\n")
    (tmp_path / "status.v1.json").unlink()

    result = _kb_ingest("schemas", "--check", "--dir", str(tmp_path))

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "control.v1.json" in output
    assert "status.v1.json" in output
    assert "document.v1.json" not in output


# -- the schemas themselves ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = _committed(name)

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["$id"] == f"kb-ingest/{name}"


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_schema_pins_type_and_version(message_type: str) -> None:
    schema = _committed(f"{message_type}.v1.json")

    assert schema["properties"]["type"]["const"] == message_type
    assert schema["properties"]["v"]["const"] == 1


def _example_id(message: Message) -> str:
    return f"{message.type}-{EXAMPLES.index(message)}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("message", EXAMPLES, ids=_example_id)
def test_valid_message_validates_against_its_schema(message: Message) -> None:
    instance = json.loads(message.to_bytes())

    errors = list(_validator(message.type).iter_errors(instance))  # type: ignore[attr-defined]

    assert errors == []


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_message_missing_a_required_field_fails_its_schema(message_type: str) -> None:
    validator = _validator(message_type)
    instance = json.loads(valid_examples()[message_type][0].to_bytes())
    required = _committed(f"{message_type}.v1.json")["required"]
    assert required

    for field in required:
        broken = {k: v for k, v in instance.items() if k != field}
        assert not validator.is_valid(broken), f"{message_type} without {field} validated"


@pytest.mark.parametrize(
    "contents",
    [
        {"text": "hi", "content_b64": "aGk="},
        {"text": "hi", "source_uri": "file:///tmp/a.txt"},
        {"content_b64": "aGk=", "source_uri": "file:///tmp/a.txt"},
        {"text": "hi", "content_b64": "aGk=", "source_uri": "file:///tmp/a.txt"},
        {},
    ],
    ids=["text+b64", "text+uri", "b64+uri", "all-three", "none"],
)
def test_document_schema_requires_exactly_one_content(contents: dict[str, str]) -> None:
    instance = {
        "type": "document",
        "v": 1,
        "job_id": "job-1",
        "kb_id": "kb-1",
        "doc_id": "doc-1",
        "content_type": "text/plain",
        **contents,
    }

    assert not _validator("document").is_valid(instance)


@pytest.mark.parametrize(
    ("message_type", "field", "value"),
    [
        ("document", "job_id", "job 1"),
        ("document", "doc_id", ""),
        ("document", "v", 2),
        ("control", "command", "delete"),
        ("control", "phase", "embed"),
        ("status", "version", 0),
        ("status", "status", "stuck"),
        ("phase-event", "outcomes", []),
        ("phase-marker", "marker", "resume"),
        ("chunk", "type", "document"),
    ],
)
def test_schema_rejects_a_bad_value(message_type: str, field: str, value: Any) -> None:
    instance = json.loads(valid_examples()[message_type][0].to_bytes())
    instance[field] = value

    assert not _validator(message_type).is_valid(instance)


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_schema_allows_unknown_extra_fields(message_type: str) -> None:
    instance = json.loads(valid_examples()[message_type][0].to_bytes())
    instance["added_in_v2"] = {"anything": [1, None]}

    assert _validator(message_type).is_valid(instance)
