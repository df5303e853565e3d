"""Churn: a tabular pipeline run directly or as a job.

    modelfleet pipeline run examples/churn/pipeline.py --param n_estimators=200
    modelfleet jobs submit examples/churn/pipeline.py --param seed=3

Steps: load (synthetic customers, seeded) -> check (schema + statistics) -> split -> train
(column transformer + gradient boosting) -> evaluate. The run registers ``churn`` with its
metrics, params, data digest, code digest and the training data's profile, and promotes
it to dev when accuracy >= 0.9.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelfleet.pipeline import Column, DataSchema, Pipeline, Registration, step, validate

SCHEMA = DataSchema(
    columns={
        "tenure": Column("int", min=0, max=120),
        "monthly": Column("float", min=0, max=500),
        "calls": Column("int", min=0, max=50),
        "plan": Column("category", categories=("basic", "plus", "pro")),
        "churned": Column("int", min=0, max=1),
    },
    min_rows=500,
    mean_ranges={"monthly": (20.0, 150.0)},
    label="churned",
    min_class_share=0.1,
)


@step
def customers(rows: int = 4000, seed: int = 0, corrupt: int = 0) -> pd.DataFrame:
    """Synthetic customers; ``corrupt`` > 0 plants that many impossible tenures."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows),
            "monthly": rng.gamma(4.0, 18.0, rows).round(2),
            "calls": rng.poisson(1.5, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
        }
    )
    risk = (
        2.2
        - 0.06 * frame["tenure"]
        + 0.012 * frame["monthly"]
        + 0.55 * frame["calls"]
        - 0.9 * (frame["plan"] == "pro")
    )
    frame["churned"] = (risk + rng.logistic(0, 0.25, rows) > 0).astype(int)
    if corrupt:
        frame.loc[frame.index[:corrupt], "tenure"] = -5
    return frame


@step
def checked(customers: pd.DataFrame) -> pd.DataFrame:
    """Stop the run (with a report of each failing value) if the batch breaks the schema."""
    return validate(customers, SCHEMA)


@step(outputs=("X_train", "X_test", "y_train", "y_test"))
def split(checked: pd.DataFrame, seed: int = 0, test_share: float = 0.25) -> tuple[Any, ...]:
    from sklearn.model_selection import train_test_split

    X = checked.drop(columns="churned").astype({"monthly": "float32"})
    return tuple(
        train_test_split(
            X,
            checked["churned"].to_numpy(),
            test_size=test_share,
            random_state=seed,
            stratify=checked["churned"],
        )
    )


@step
def model(X_train: pd.DataFrame, y_train: Any, n_estimators: int = 150, seed: int = 0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    prep = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
    )
    return make_pipeline(
        prep, GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
    ).fit(X_train, y_train)


@step
def scores(model: Any, X_test: pd.DataFrame, y_test: Any) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = model.predict(X_test)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1": float(f1_score(y_test, predicted)),
        "auc": float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])),
    }


pipeline = Pipeline(
    name="churn",
    steps=[customers, checked, split, model, scores],
    register=Registration(
        name="churn", model="model", metrics="scores", sample="X_train", labels="y_train"
    ),
    gate=["accuracy>=0.9"],
    promote_to="dev",
)
