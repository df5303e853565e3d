"""Model references."""

from __future__ import annotations

import pytest

from modelfleet import InvalidReferenceError, ModelRef, Stage, parse_ref
from modelfleet.refs import validate_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn", ModelRef("churn")),
        ("churn:3", ModelRef("churn", version=3)),
        ("churn@prod", ModelRef("churn", stage=Stage.PROD)),
        ("churn@QA", ModelRef("churn", stage=Stage.QA)),
        ("fraud.v2-eu_1:12", ModelRef("fraud.v2-eu_1", version=12)),
    ],
)
def test_parse_valid_references(text: str, expected: ModelRef) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("churn:0", "positive integer"),
        ("churn:x", "positive integer"),
        ("churn@staging", "unknown stage"),
        ("churn:3@prod", "not both"),
        ("", "model name"),
        ("-churn", "model name"),
        ("a" * 101, "model name"),
    ],
)
def test_invalid_references_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError, match=fragment) as info:
        parse_ref(text)
    assert "name:3" in str(info.value)  # the hint shows the valid forms


@pytest.mark.parametrize("name", ["iris\n", "iris\r", "ir is", "iris\x00", "iris/../x", "iris\t"])
def test_names_with_control_characters_or_spaces_are_refused(name: str) -> None:
    # A reference typed by a user is stripped first; a name being registered is not.
    with pytest.raises(InvalidReferenceError, match="model name"):
        validate_name(name)
