"""Trainer images: torch read from imports, one tag per file, the context a build is made from."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from modelfleet.build import PipelineFile, imports_torch, plan_trainer, trainer_containerfile
from modelfleet.build.trainer import TrainerPlan, trainer_requirements, write_trainer_context
from modelfleet.errors import BuildError

GOLDEN = Path(__file__).parent / "golden"
BASE = "localhost/modelfleet-base:bookworm"
# The path component of an image name and a tag (OCI distribution spec).
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
TAG = re.compile(r"[\w][\w.-]{0,127}")

CHURN = b'''"""Churn: a logistic regression on two features."""
import numpy as np
from modelfleet.pipeline import Pipeline, Registration, step


@step(outputs=("X", "y"))
def data() -> tuple:
    X = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


@step
def model(X, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, y)


pipeline = Pipeline(
    name="churn", steps=[data, model], register=Registration(name="churn", model="model")
)
'''


@pytest.mark.parametrize(
    "source",
    [
        "import torch",
        "import torch.nn as nn",
        "from torch import nn",
        "from torch.utils.data import DataLoader",
        "import numpy, torch",
        "def model(X, y):\n    import torch\n    return torch.tensor(X)",
        "class Net:\n    def fit(self):\n        from torch import optim\n        return optim",
        "if True:\n    try:\n        import torch\n    except ImportError:\n        torch = None",
        "import importlib\ntorch = importlib.import_module('torch')",
        "from importlib import import_module\nnn = import_module('torch.nn')",
        "torch = __import__('torch')",
    ],
)
def test_torch_is_found_wherever_it_is_imported(source: str) -> None:
    assert imports_torch(source)


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np",
        "import torchvision_like_name",
        "from . import torch",  # a sibling module of that name, not PyTorch
        "from mylib import torch",
        "# import torch\nx = 'import torch'",
        "import importlib\nmod = importlib.import_module(name)",
    ],
)
def test_other_imports_do_not_pull_torch(source: str) -> None:
    assert not imports_torch(source)


def test_a_file_that_is_not_python_is_explained() -> None:
    with pytest.raises(BuildError, match=r"churn.py is not valid Python \(line 2"):
        imports_torch("import numpy\ndef broken(:\n", "churn.py")


def _pipeline(folder: Path, name: str = "churn.py", source: bytes = CHURN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(source)
    return path


def test_one_tag_per_file_content_and_a_fixed_place_in_the_image(tmp_path: Path) -> None:
    file = PipelineFile.read(_pipeline(tmp_path))
    digest = hashlib.sha256(CHURN).hexdigest()
    assert file.sha256 == digest
    assert file.in_image == "/opt/modelfleet/pipeline/churn.py"
    assert file.tag() == f"localhost/modelfleet/trainer-churn:{digest[:12]}"
    assert file.tag("registry.local/ml") == f"registry.local/ml/trainer-churn:{digest[:12]}"
    edited = PipelineFile.read(_pipeline(tmp_path / "b", source=CHURN + b"# v2\n"))
    assert edited.tag() != file.tag()
    for name in ("Churn_Model.py", "train.v2.py", "a--b.py", "_.py"):
        tag = PipelineFile.read(_pipeline(tmp_path / "c", name)).tag()
        repository, version = tag.rsplit(":", 1)
        assert all(COMPONENT.fullmatch(part) for part in repository.split("/")[1:]), tag
        assert TAG.fullmatch(version)


@pytest.mark.parametrize("name", ["my pipeline.py", "churn.txt", "$(id).py", "-x.py"])
def test_file_names_an_image_cannot_carry_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(BuildError, match="cannot go into an image"):
        PipelineFile.read(_pipeline(tmp_path, name))


def test_a_missing_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"cannot read the pipeline file .*churn.py"):
        PipelineFile.read(tmp_path / "churn.py")


def _names(requirements: list[str]) -> dict[str, Requirement]:
    parsed = [Requirement(line) for line in requirements]
    return {r.name.lower(): r for r in parsed}


def test_the_training_stack_is_pinned_to_what_runs_here() -> None:
    plain = _names(trainer_requirements(torch=False))
    for name in ("scikit-learn", "skl2onnx", "pandas", "onnx", "onnxruntime", "psycopg", "s3fs"):
        assert name in plain  # onnx comes through train's own `modelfleet[onnx]`
    for name in ("sqlalchemy", "alembic", "typer", "pydantic-settings"):
        assert name in plain  # the runner opens the queue and the registry
    for name in ("torch", "onnxscript", "kubernetes", "starlette", "uvicorn", "pytest", "mypy"):
        assert name not in plain
    assert plain["psycopg"].extras == {"binary"}
    for requirement in plain.values():
        (spec,) = requirement.specifier
        assert spec.operator == "=="
        assert spec.version == importlib.metadata.version(requirement.name)
    with_torch = _names(trainer_requirements(torch=True))
    assert set(with_torch) - set(plain) == {"torch", "onnxscript"}


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A small, well-formed wheel (what the context copies and the SBOM lists)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


def _plan(tmp_path: Path, source: bytes = CHURN, *, torch: bool | None = None) -> TrainerPlan:
    pipeline = PipelineFile.read(_pipeline(tmp_path / "src", source=source))
    return plan_trainer(pipeline, base=BASE, torch=torch)


def _instructions(containerfile: str) -> list[list[str]]:
    """The Containerfile's instructions per stage (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", containerfile)
    stages: list[list[str]] = []
    for line in joined.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_containerfile_matches_the_golden_file(tmp_path: Path) -> None:
    text = trainer_containerfile(_plan(tmp_path))
    text = re.sub(r'(org.opencontainers.image.revision=)"[^"]*"', r'\1"<git>"', text)
    golden = GOLDEN / "Containerfile.trainer"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_the_image_runs_the_pipeline_as_uid_10001_from_its_fixed_path(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    digest = plan.pipeline.sha256
    install, final = _instructions(trainer_containerfile(plan))
    assert install[0] == f"FROM {BASE} AS install"
    # Hermetic: both installs read the context's wheels only.
    installs = [line for line in install if " install " in line]
    assert len(installs) == 2
    assert all("--no-index" in line for line in installs)
    assert not re.search(r"curl|wget|https?://|ADD ", "\n".join(install + final))
    kinds = " ".join(line.split()[0] for line in final)
    assert kinds == "FROM ENV COPY COPY RUN LABEL ENV USER ENTRYPOINT CMD"
    assert final[2] == "COPY --from=install /opt/venv /opt/venv"  # shared by every pipeline
    assert final[3] == "COPY pipeline/churn.py /opt/modelfleet/pipeline/churn.py"
    assert f'echo "{digest}  /opt/modelfleet/pipeline/churn.py" | sha256sum -c -' in final[4]
    assert f'io.modelfleet.pipeline.sha256="{digest}"' in final[5]
    assert 'io.modelfleet.torch="false"' in final[5]
    assert final[6] == "ENV MODELFLEET_PIPELINE=/opt/modelfleet/pipeline/churn.py"
    assert final[7] == "USER 10001:10001"
    assert json.loads(final[9].removeprefix("CMD ")) == [
        "pipeline",
        "run",
        "/opt/modelfleet/pipeline/churn.py",
    ]
    assert "MODELFLEET_HOME=/tmp/modelfleet" in final[1]  # the only writable place
    assert "MODELFLEET_DB_URL" not in trainer_containerfile(plan)


def test_torch_is_installed_when_imported_or_asked_for(tmp_path: Path) -> None:
    torch_source = CHURN.replace(b"import numpy as np", b"import numpy as np\nimport torch")
    found = _plan(tmp_path / "a", torch_source)
    assert found.torch
    assert any(r.startswith("torch==") for r in found.requirements)
    assert found.labels["io.modelfleet.torch"] == "true"
    assert not _plan(tmp_path / "b", torch_source, torch=False).torch
    assert _plan(tmp_path / "c", torch=True).torch
    plain = _plan(tmp_path / "d")
    assert not plain.torch
    assert not any(r.startswith(("torch==", "onnxscript==")) for r in plain.requirements)


@pytest.mark.parametrize("torch", [False, True])
def test_the_context_holds_the_wheels_it_is_given_and_the_pipeline(
    tmp_path: Path, torch: bool
) -> None:
    plan = _plan(tmp_path, torch=torch)
    stack = [_wheel(tmp_path / "cache", "scikit_learn", "1.9.1"), _wheel(tmp_path, "pip", "26.3")]
    if torch:
        stack.append(_wheel(tmp_path / "cache", "torch", "2.13.0"))
    own = _wheel(tmp_path / "own", "modelfleet", "0.1.0")
    out = tmp_path / "ctx"
    written = write_trainer_context(plan, out, own=own, wheels=stack)
    copied = out / "pipeline" / "churn.py"
    assert copied.read_bytes() == CHURN
    assert copied.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (out / "wheels").glob("*.whl")) == sorted(w.name for w in stack)
    assert [p.name for p in (out / "own").iterdir()] == [own.name]
    requirements = (out / "wheels" / "requirements.txt").read_text().split()
    assert requirements == plan.requirements
    assert any(r.startswith("torch==") for r in requirements) is torch
    assert (out / "Containerfile").read_text() == trainer_containerfile(plan)
    sbom = json.loads((out / "sbom.cdx.json").read_text())
    assert sbom == written["sbom"]
    components = {c["name"]: c for c in sbom["components"]}
    assert components["/opt/modelfleet/pipeline/churn.py"]["type"] == "file"
    assert components["/opt/modelfleet/pipeline/churn.py"]["hashes"][0]["content"] == (
        plan.pipeline.sha256
    )
    assert {"modelfleet", "scikit-learn", "pip"} <= set(components)
    assert ("torch" in components) is torch
    assert not any(c["type"] == "machine-learning-model" for c in sbom["components"])
    build = json.loads((out / "build.json").read_text())
    assert (build["sha256"], build["torch"], build["tag"]) == (
        plan.pipeline.sha256,
        torch,
        plan.pipeline.tag(),
    )
    # A second write replaces what the first left (a rebuild for an edited pipeline).
    write_trainer_context(plan, out, own=own, wheels=stack[:1])
    assert [p.name for p in (out / "wheels").glob("*.whl")] == [stack[0].name]


def test_an_unwritable_context_folder_is_explained(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BuildError, match="cannot write the build context"):
        write_trainer_context(
            _plan(tmp_path), blocker / "ctx", own=_wheel(tmp_path, "modelfleet", "0.1.0"), wheels=[]
        )


def test_the_cli_keeps_model_and_trainer_builds_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelfleet.cli import main

    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    path = str(_pipeline(tmp_path))

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, " ".join(capsys.readouterr().err.split())

    code, err = run("build", "churn:1", "--env", "qa", "--trainer", path)
    assert code == 2  # a malformed command line, like any other usage error
    assert "'--trainer': it builds a pipeline's image; REF, --env and --variant" in err
    code, err = run("build", "--engine", "none")
    assert code == 2
    assert "'REF': a model image needs REF and --env (a pipeline's image: --trainer" in err
    code, err = run("build", "churn:1", "--engine", "none")
    assert (code, "'--env'" in err) == (2, True)
    code, err = run("build", "churn:1", "--env", "qa", "--with-torch", "--engine", "none")
    assert (code, "'--with-torch': only for --trainer builds" in err) == (2, True)
    code, err = run("build", "--trainer", str(tmp_path / "ghost.py"), "--engine", "none")
    assert code == 1
    assert err.startswith("error: cannot read the pipeline file ")


@pytest.mark.slow
def test_cli_trainer_build_without_engine_writes_a_context_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelfleet.cli import main

    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_DB_URL", "postgresql://trainer:s3cret-pw@db:5432/registry")
    path = _pipeline(tmp_path / "project")
    out = tmp_path / "ctx"
    argv = ["build", "--trainer", str(path), "--engine", "none", "--out", str(out), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tag"] == PipelineFile.read(path).tag()  # what `jobs submit` will name
    assert result["digest"] is None
    assert result["labels"]["io.modelfleet.pipeline.sha256"] == hashlib.sha256(CHURN).hexdigest()
    wheels = {p.name.split("-")[0].lower() for p in (out / "wheels").glob("*.whl")}
    assert {"scikit_learn", "skl2onnx", "pandas", "sqlalchemy", "psycopg", "s3fs", "pip"} <= wheels
    assert not wheels & {"torch", "onnxscript", "kubernetes", "pytest"}
    assert [p.name.split("-")[0] for p in (out / "own").iterdir()] == ["modelfleet"]
    for file in out.rglob("*"):
        if file.is_file() and file.suffix != ".whl":
            assert b"s3cret" not in file.read_bytes(), file
    report = json.loads((out / "vulnerabilities.json").read_text())
    assert report["summary"] == result["vulnerabilities"]
