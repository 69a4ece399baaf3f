"""docs/configuration.md is generated from the schema and must match it."""

import msgspec
import pytest

from config import reference, schema

pytestmark = pytest.mark.unit


def test_configuration_doc_is_up_to_date():
    assert reference.DOC_PATH.read_text() == reference.render(), (
        "docs/configuration.md is out of date: run `.venv/bin/python -m config.reference --write`")


def test_every_key_is_documented():
    undocumented = [line.split("|")[1].strip() for line in reference.render().splitlines()
                    if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert undocumented == []


def test_every_field_of_every_section_is_listed():
    text = reference.render()

    def keys(cls, prefix):
        for f in msgspec.structs.fields(cls):
            yield f"{prefix}{f.name}"
            sub = reference._struct_of(f.type)
            if sub is not None:
                yield from keys(sub, f"{prefix}{f.name}.")

    missing = [k for k in keys(schema.Config, "") if f"| `{k}` |" not in text]
    assert missing == []


def test_change_column_follows_the_schema():
    assert reference._reload("bus.linger_ms") == "restart-only"
    assert reference._reload("nonce.state_dir") == "at start"
    assert reference._reload("sandbox.chain.port") == "at start"
    assert reference._reload("circuit_breaker.open_timeout_seconds") == "hot"
