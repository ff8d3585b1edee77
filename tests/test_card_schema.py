"""The bundle schema (edgeface/schemas/bundle.schema.json) is the one list of card and manifest fields
every SDK reads: the C++ core (CMake embeds the file) and the TypeScript package (scripts/generate.mjs)
take the card's field names, required fields and defaults from its "card" section, and validate the
manifest against it. These tests fail when the Python dataclasses gain a field the schema does not
describe, so a new field cannot ship while the SDKs refuse it (issue 34: `int8_float_scope`)."""
import dataclasses
import json
from importlib import resources

from edgeface.core.card import ModelCard
from edgeface.runtime import manifest as M
from edgeface.runtime.bundle import Manifest


def _schema() -> dict:
    return json.loads(resources.files("edgeface").joinpath("schemas/bundle.schema.json").read_text())


def _no_default(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def test_card_schema_lists_every_model_card_field_with_its_default():
    card = _schema()["properties"]["card"]
    fields = dataclasses.fields(ModelCard)
    assert card["additionalProperties"] is False  # an SDK refuses a field the schema does not list, as ModelCard.from_dict does
    assert set(card["properties"]) == {f.name for f in fields}, "describe the new ModelCard field in the schema's card section"
    assert set(card["required"]) == {f.name for f in fields if _no_default(f)}
    # a card with only its required fields: to_dict() holds exactly the schema's defaults (a field with
    # no schema default, like int8_float_scope, is left out, so older cards keep their fingerprint)
    required = {"name": "n", "arch": "a", "input_size": [112, 112], "embedding_size": 128, "template": "arcface_112x112"}
    d = ModelCard.from_dict(required).to_dict()
    defaults = {k: p["default"] for k, p in card["properties"].items() if "default" in p}
    assert d == {**required, **defaults}
    assert {k for k in card["properties"] if k not in required and "default" not in card["properties"][k]} == {"int8_float_scope"}


def test_every_card_field_set_validates_and_a_bad_one_is_refused():
    schema = _schema()["properties"]["card"]
    full = ModelCard(name="n", arch="a", input_size=(150, 150), embedding_size=128, template="dlib_150x150", color_order="BGR",
                     mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0), licence="CC0", description="d", source="s", params=7, mflops=1.5,
                     arch_kwargs={"alpha": 1.0, "widths": [1, 2]}, int8_float_scope={"first": True, "last": 0})
    assert set(full.to_dict()) == set(schema["properties"])
    assert M.validate_schema(full.to_dict(), schema) == []
    for bad in ({"first": 1}, {"last": -1}, {"last": 1.0}, {"middle": 2}, [1]):
        assert M.validate_schema({**full.to_dict(), "int8_float_scope": bad}, schema), bad
    assert M.validate_schema({**full.to_dict(), "colour": "RGB"}, schema)


def test_manifest_schema_describes_every_manifest_field():
    schema = _schema()
    fields = [f for f in dataclasses.fields(Manifest) if f.name != "extra"]
    assert set(schema["properties"]) == {f.name for f in fields}, "describe the new Manifest field in the bundle schema"
    assert set(schema["required"]) == {f.name for f in fields if _no_default(f)}
