"""Lineage facts: the git commit of the work tree, the digest of the training data, the runtime."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.registry import (
    Registry,
    data_sha256,
    git_state,
)
from tests.models import sum_graph

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    # A private identity and no global or system config: the developer's settings stay out.
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git work tree with one commit of ``train.py``."""
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "train.py").write_text("print('train')\n")
    _git(root, "add", "train.py")
    _git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_git_state_names_the_commit_and_whether_tracked_files_changed(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == (head, False)
    (repo / "notes.txt").write_text("untracked files do not make a tree dirty\n")
    assert git_state(repo) == (head, False)
    (repo / "train.py").write_text("print('train harder')\n")
    assert git_state(repo) == (head, True)
    subdir = repo / "src"
    subdir.mkdir()
    assert git_state(subdir) == (head, True)


def test_git_state_outside_a_work_tree_is_unknown(tmp_path: Path) -> None:
    assert git_state(tmp_path) == (None, None)


@needs_git
def test_registering_inside_a_repository_records_its_commit_and_data_digest(
    repo: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = repo / "train.npy"
    np.save(data, np.arange(12, dtype=np.float32).reshape(4, 3))
    monkeypatch.chdir(repo)
    version = mf.register(sum_graph(), name="adder", training_data=str(data), registry=registry)
    assert version.lineage.git_commit == _git(repo, "rev-parse", "HEAD")
    assert version.lineage.git_dirty is False
    assert version.lineage.data_sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert registry.get("adder:1").lineage == version.lineage
    (repo / "train.py").write_text("print('changed after the commit')\n")
    again = mf.register(sum_graph(), name="adder", registry=registry)
    assert again.lineage.git_dirty is True
    assert again.lineage.data_sha256 is None


def test_a_file_digest_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"a,b\n1,2\n" * 200_000)  # larger than one read chunk
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert data_sha256(path) == expected
    assert data_sha256(str(path)) == expected


def test_array_digests_are_stable_and_see_every_difference() -> None:
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = data_sha256({"X": X, "y": np.array([0, 1])})
    assert data_sha256({"y": np.array([0, 1]), "X": X.copy()}) == base  # key order is irrelevant
    changed = X.copy()
    changed[1, 2] = 5.5
    variants = [
        {"X": changed, "y": np.array([0, 1])},  # one value
        {"X": X.astype(np.float64), "y": np.array([0, 1])},  # dtype
        {"X": X.reshape(3, 2), "y": np.array([0, 1])},  # shape, same bytes
        {"features": X, "y": np.array([0, 1])},  # name
        {"X": X},  # a missing array
    ]
    digests = {data_sha256(v) for v in variants}
    assert len(digests) == len(variants)
    assert base not in digests


def test_string_data_digests_by_value() -> None:
    words = np.array([["red"], ["green"]], dtype=object)
    assert data_sha256({"colour": words}) == data_sha256({"colour": words.copy()})
    assert data_sha256({"colour": words}) != data_sha256(
        {"colour": np.array([["red"], ["blue"]], dtype=object)}
    )
    # Items are separated, so shifting characters between neighbours changes the digest.
    assert data_sha256({"c": np.array([["ab"], ["c"]], dtype=object)}) != data_sha256(
        {"c": np.array([["a"], ["bc"]], dtype=object)}
    )
