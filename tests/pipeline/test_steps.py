"""Declaring steps, typing --param values and loading pipeline files: what users write first."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import modelfleet as mf
from modelfleet.pipeline import Pipeline, Step, load_pipeline, parse_params, step

PIPELINE_FILE = textwrap.dedent("""
    from modelfleet.pipeline import Pipeline, step

    @step
    def numbers(n: int = 3):
        return list(range(n))

    pipeline = Pipeline(name="numbers", steps=[numbers])
""")


def test_bare_decorator_names_the_step_and_its_output_after_the_function() -> None:
    @step
    def features(rows, scale: float = 2.0, *, seed: int = 0):
        return [r * scale for r in rows]

    assert isinstance(features, Step)
    assert features.name == "features"
    assert features.outputs == ("features",)
    assert features.cache is True
    assert features.parameters == ("rows", "scale", "seed")
    assert features.defaults == {"scale": 2.0, "seed": 0}
    # A step stays an ordinary function for the user's own unit tests.
    assert features([1, 2]) == [2.0, 4.0]
    assert features([1], scale=3.0) == [3.0]


def test_decorator_options_rename_split_outputs_and_switch_off_the_cache() -> None:
    @step(name="load", outputs=("X", "y"), cache=False)
    def read_table(path: str):
        return path, path.upper()

    assert read_table.name == "load"
    assert read_table.outputs == ("X", "y")
    assert read_table.cache is False
    assert read_table.defaults == {}
    assert read_table("a") == ("a", "A")

    @step(name="renamed")
    def original():
        return 1

    assert original.outputs == ("renamed",)


def test_code_hash_follows_the_source_text(tmp_path: Path) -> None:
    path = tmp_path / "p.py"
    path.write_text(PIPELINE_FILE)
    first = load_pipeline(path).steps[0].code_hash
    again = load_pipeline(path).steps[0].code_hash
    path.write_text(PIPELINE_FILE.replace("range(n)", "range(n + 1)"))
    changed = load_pipeline(path).steps[0].code_hash
    assert first == again
    assert len(first) == 64 and set(first) <= set("0123456789abcdef")
    assert changed != first


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (
            ["n=3", "lr=1e-3", "on=false", "none=null"],
            {"n": 3, "lr": 0.001, "on": False, "none": None},
        ),
        (["layers=[64, 32]", 'opts={"a": 1}'], {"layers": [64, 32], "opts": {"a": 1}}),
        (['name="quoted"', "path=data/x.csv"], {"name": "quoted", "path": "data/x.csv"}),
        (["expr=a=b", "empty="], {"expr": "a=b", "empty": ""}),
        ([" padded =7", "n=1", "n=2"], {"padded": 7, "n": 2}),
        ([], {}),
    ],
)
def test_params_are_typed_as_json_where_they_parse(pairs: list[str], expected: dict) -> None:
    assert parse_params(pairs) == expected


@pytest.mark.parametrize("bad", ["novalue", "=3", "  =3"])
def test_a_param_without_key_or_equals_sign_is_refused_with_the_form_to_use(bad: str) -> None:
    with pytest.raises(mf.ModelfleetError) as caught:
        parse_params(["ok=1", bad])
    assert f"invalid param {bad!r}" in str(caught.value)
    assert caught.value.hint == "write --param key=value"


def test_loading_records_the_resolved_source_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "numbers.py").write_text(PIPELINE_FILE)
    monkeypatch.chdir(tmp_path)
    loaded = load_pipeline("numbers.py")
    assert isinstance(loaded, Pipeline)
    assert loaded.name == "numbers"
    assert loaded.source == str((tmp_path / "numbers.py").resolve())
    assert [s.name for s in loaded.steps] == ["numbers"]


def test_two_files_with_the_same_name_load_their_own_pipelines(tmp_path: Path) -> None:
    for folder, label in (("a", "first"), ("b", "second")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "pipeline.py").write_text(
            PIPELINE_FILE.replace('name="numbers"', f'name="{label}"')
        )
    first = load_pipeline(tmp_path / "a" / "pipeline.py")
    second = load_pipeline(tmp_path / "b" / "pipeline.py")
    assert (first.name, second.name) == ("first", "second")
    assert first.source != second.source


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("x = 1 / 0\n", "failed: ZeroDivisionError: division by zero"),
        ("def broken(:\n", "failed: SyntaxError"),
        ("import modelfleet_no_such_module\n", "failed: ModuleNotFoundError"),
    ],
)
def test_a_file_that_cannot_be_imported_names_the_file_and_the_error(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "bad.py"
    path.write_text(body)
    with pytest.raises(mf.ModelfleetError) as caught:
        load_pipeline(path)
    assert f"importing {path}" in str(caught.value)
    assert expected in str(caught.value)
    assert caught.value.__cause__ is not None


def test_a_pipeline_name_bound_to_something_else_is_refused_with_the_line_to_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wrong.py"
    path.write_text("pipeline = ['not', 'a', 'Pipeline']\n")
    with pytest.raises(mf.ModelfleetError) as caught:
        load_pipeline(path)
    assert f"{path} defines no 'pipeline'" in str(caught.value)
    assert caught.value.hint == "end the file with: pipeline = Pipeline(name=..., steps=[...])"


def test_a_folder_is_not_a_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(mf.ModelfleetError, match="does not exist; check the path"):
        load_pipeline(tmp_path)
