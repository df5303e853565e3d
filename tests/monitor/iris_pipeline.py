"""A small classifier pipeline (iris, logistic regression) for the retraining loop tests."""

from __future__ import annotations

from typing import Any

from modelfleet.pipeline import Pipeline, Registration, step


@step(outputs=("X_train", "X_test", "y_train", "y_test"), cache=False)  # reads a file
def split(data: str, seed: int = 0) -> tuple[Any, ...]:
    """The latest labelled data: CSV rows of four features and the class."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    table = np.loadtxt(data, delimiter=",", dtype=np.float32)
    X, y = table[:, :4], table[:, 4].astype(np.int64)
    return tuple(train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y))


@step
def model(X_train: Any, y_train: Any, C: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=500).fit(X_train, y_train)


@step
def scores(model: Any, X_test: Any, y_test: Any) -> dict[str, float]:
    return {"accuracy": float(model.score(X_test, y_test))}


pipeline = Pipeline(
    name="iris",
    steps=[split, model, scores],
    register=Registration(
        name="iris", model="model", metrics="scores", sample="X_train", labels="y_train"
    ),
    gate=["accuracy>=0.8"],
    promote_to="dev",
)
