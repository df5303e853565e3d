"""modelfleet end to end on one machine, from training to a monitored service and back.

Run it with ``make demo``. It trains three real models on data generated here or shipped
with scikit-learn:

* ``churn``: a pipeline (validate, split, gradient boosting) submitted as a job on the queue
  and run by a local worker;
* ``cancer-gbt``: a tabular pipeline (imputer + HistGradientBoosting) on the breast-cancer set;
* ``digits-mlp``: a small PyTorch network on the 8x8 digits set.

Each is registered (stored safely, frozen to ONNX and verified against the source), quantized
to fp16 and int8 where that helps (the tolerance gate refuses the rest), and the best
version is promoted to qa behind an accuracy requirement. Then a container image is built
and run, Kubernetes manifests are written, the qa versions are served and called, and the
monitoring loop is shown: true labels sent as feedback move live accuracy (and switch a
model's cache off), shifted inputs raise drift, and the retrain trigger says which training
job it would queue. It ends with the monitoring summary. The registry lives in
``MODELFLEET_HOME`` (default ``.demo/home``, wiped at the start so numbering starts at 1).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

import modelfleet as mf
from modelfleet.client import Client
from modelfleet.config import load_settings
from modelfleet.datasets import LabeledData

console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)


def train_tabular() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    X, y = load_breast_cancer(return_X_y=True)
    # float32 from the start: ONNX tree ensembles compare in float32, so the thresholds the
    # model learns must be float32 values for the frozen graph to agree with it exactly (and
    # no float64 arithmetic such as a scaler may sit in front of the trees).
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    model = make_pipeline(
        SimpleImputer(strategy="median"),
        HistGradientBoostingClassifier(max_iter=100, random_state=0),
    ).fit(X_train, y_train)
    return model, X_train, X_test, y_train, y_test, float(model.score(X_test, y_test))


def train_torch() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    features, labels = torch.from_numpy(X_train), torch.from_numpy(y_train)
    for _ in range(60):
        for start in range(0, len(features), 64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                net(features[start : start + 64]), labels[start : start + 64]
            )
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean())
    return net, X_train, X_test, y_train, y_test, accuracy


def quantize_all(ref: str, X_test: np.ndarray, y_test: np.ndarray, settings: Any) -> list[str]:
    notes = []
    for variant, method in (("fp16", "dynamic"), ("int8", "dynamic"), ("int8", "static")):
        label = variant if variant == "fp16" else f"{variant}-{method}"
        try:
            child = mf.quantize(
                ref,
                to=variant,
                method=method,
                eval_data=LabeledData(X_test, y_test),
                max_drop=0.01,
                settings=settings,
            )
            notes.append(f"{ref} -> {child.ref}: {label} accepted")
        except mf.QuantizeError as exc:
            notes.append(f"{ref} {label}: {exc}")
    return notes


def summary(settings: Any) -> Table:
    table = Table(title="modelfleet demo: registry summary", title_justify="left")
    for column in (
        "version",
        "variant",
        "parent",
        "stages",
        "ONNX size",
        "accuracy",
        "ms b1",
        "ms b64",
    ):
        table.add_column(
            column,
            justify="right" if column.startswith(("ONNX", "ms", "acc")) else "left",
            no_wrap=True,
        )
    with mf.Registry.open(settings) as reg:
        for model in reg.models():
            for v in reg.versions(model.name):
                record = v.verification or {}
                latency = record.get("latency") or record.get("latency_after") or {}
                onnx = v.artifact("onnx")
                table.add_row(
                    v.ref,
                    record.get("quantizer", v.variant.value),
                    str(v.lineage.parent_version or ""),
                    ",".join(v.stages),
                    f"{onnx.size / 1000:.1f} kB" if onnx else "-",
                    f"{v.metrics.get('accuracy', float('nan')):.4f}",
                    # A graph with a fixed batch size records batch_<n>_ms alone.
                    *(
                        f"{latency[key]:.3f}" if key in latency else "-"
                        for key in ("batch_1_ms", "batch_64_ms")
                    ),
                )
    return table


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited; see .demo/serve.log")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the server did not become ready")


def _median_ms(call: Any, runs: int = 200) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


# Drift is scored once 100 recent rows are in and every second (defaults: 200 rows, 5 s),
# so the demo's short run shows it; the cache follows live accuracy after 20 labels.
SERVE_CONFIG = """
monitoring: {summary_window_s: 30}
models:
  - {ref: cancer-gbt@qa, watch: {drift_min_rows: 100, drift_interval_s: 1}}
  - {ref: digits-mlp@qa, watch: {drift_min_rows: 100, drift_interval_s: 1}}
  - {ref: churn@qa, watch: {drift_min_rows: 100, drift_interval_s: 1}}
"""


def serve_and_call(home: Path, data: dict[str, np.ndarray]) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = home / "serve.yaml"
    config.write_text(SERVE_CONFIG)
    log = (home.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelfleet",
            "--home",
            str(home),
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(url, proc)
        call(url, data["Xg_test"], data["Xn_test"])
        console.rule("8. monitor: feedback and live accuracy, drift, the retrain trigger")
        monitor(home, url, data)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def call(url: str, Xg_test: np.ndarray, Xn_test: np.ndarray) -> None:
    table = Table(title=f"served at {url}", title_justify="left")
    for column in ("model", "protocol", "rows", "answer", "median ms (client)"):
        table.add_column(column)
    with httpx.Client(base_url=url) as http, Client(url) as client:
        one = Xg_test[:1]
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 30],
                    "datatype": "FP32",
                    "data": one.ravel().tolist(),
                }
            ]
        }
        answer = http.post("/v2/models/cancer-gbt/infer", json=body).json()
        ms = _median_ms(lambda: http.post("/v2/models/cancer-gbt/infer", json=body))
        table.add_row(
            "cancer-gbt",
            "V2 JSON",
            "1",
            f"label {answer['outputs'][0]['data'][0]}",
            f"{ms:.3f}",
        )
        batch = Xn_test[:64]
        labels = client.predict("digits-mlp", batch)["output"].argmax(axis=1)
        ms = _median_ms(lambda: client.predict("digits-mlp", batch, cache=False))
        table.add_row(
            "digits-mlp", "V2 binary (SDK)", "64", f"digits {labels[:5].tolist()}…", f"{ms:.3f}"
        )
        customers = pd.DataFrame(
            {
                "tenure": np.array([2, 60], dtype=np.int64),
                "monthly": np.array([140.0, 25.0], dtype=np.float32),
                "calls": np.array([6, 0], dtype=np.int64),
                "plan": ["basic", "pro"],
            }
        )
        churn = client.predict("churn", customers)
        risk = churn["probabilities"][:, 1]
        ms = _median_ms(lambda: client.predict("churn", customers, cache=False))
        table.add_row(
            "churn",
            "V2 binary (SDK, DataFrame)",
            "2",
            f"churn risk {risk[0]:.2f} vs {risk[1]:.2f}",
            f"{ms:.3f}",
        )
        v1 = http.post(
            "/v1/models/digits-mlp:predict", json={"instances": Xn_test[:2].tolist()}
        ).json()
        table.add_row("digits-mlp", "KServe v1", "2", f"{len(v1['predictions'])} predictions", "")
        console.print(table)
        metrics = http.get("/metrics").text
    hits = _sample_sum(metrics, "modelfleet_cache_lookups_total", 'result="hit"')
    misses = _sample_sum(metrics, "modelfleet_cache_lookups_total", 'result="miss"')
    console.print(
        f"output cache: {hits:.0f} hits, {misses:.0f} misses (repeated inputs "
        "are answered from the cache; accuracy >= 0.8 enables it)"
    )


def _customers(rows: int, seed: int, price_factor: float = 1.0) -> pd.DataFrame:
    """New customers like the churn pipeline's, with monthly charges scaled by price_factor."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows).astype(np.int64),
            "monthly": (rng.gamma(4.0, 18.0, rows) * price_factor).astype(np.float32),
            "calls": rng.poisson(1.5, rows).astype(np.int64),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def monitor(home: Path, url: str, data: dict[str, np.ndarray]) -> None:
    Xn, yn, Xg, yg = data["Xn_test"], data["yn_test"], data["Xg_test"], data["yg_test"]
    with Client(url) as client:
        ids, labels = [], []
        for start in range(0, 320, 16):  # 20 requests of 16 digits, labelled later
            client.predict("digits-mlp", Xn[start : start + 16])
            ids.append(client.last_request_id)
            labels.append(yn[start : start + 16].tolist())
        done = client.feedback("digits-mlp", ids, labels)["live_accuracy"]
        console.print(
            f"digits-mlp: true labels for {done['labelled_requests']} requests -> live "
            f"accuracy {done['value']:.4f}"
        )
        ids = []
        for row in Xg[:40]:
            client.predict("cancer-gbt", row[None, :])
            ids.append(client.last_request_id)
        flipped = client.feedback("cancer-gbt", ids, [int(1 - v) for v in yg[:40]])
        console.print(
            "cancer-gbt: the labels now disagree with the model -> live accuracy "
            f"{flipped['live_accuracy']['value']:.4f}; its output cache is {flipped['cache']} "
            "(cached answers dropped until accuracy recovers)"
        )
        client.predict("churn", _customers(300, seed=7, price_factor=2.0))
        time.sleep(1.5)  # drift is rescored every second
        summary = client.summary()
    churn = next(m for m in summary["models"] if m["name"] == "churn")
    psi = churn["drift"]["psi"]
    console.print(
        "churn: prices doubled -> drift (PSI) "
        + ", ".join(f"{f} {psi[f]:.2f}" for f in sorted(psi, key=psi.get, reverse=True))
    )
    console.print(
        "(cancer-gbt and digits-mlp drift too: the latency loops above sent the same rows "
        "hundreds of times, and a window full of repeats is rightly far from the training data)"
    )
    cli = [sys.executable, "-m", "modelfleet", "--home", str(home)]
    env = {**os.environ, "COLUMNS": str(console.width)}
    console.print("retrain trigger (modelfleet monitor watch URL --for 0 --rounds 1, dry run):")
    watch = [*cli, "monitor", "watch", url, "--for", "0", "--rounds", "1"]
    subprocess.run(watch, check=True, env=env)
    out = home / "monitor"
    for what in ("rules", "dashboard"):
        subprocess.run([*cli, "monitor", what, "--out", str(out)], check=True, env=env)
    console.rule("monitoring summary (modelfleet status URL shows it live)")
    table = Table(title=f"{url}/monitor/summary", title_justify="left")
    for column in ("model", "version", "requests", "p50 / p99 ms", "cache (hit ratio)"):
        table.add_column(column, no_wrap=True)
    table.add_column("worst drift (PSI)")
    table.add_column("live accuracy (labels)", no_wrap=True)
    for m in summary["models"]:
        psi = m["drift"]["psi"]
        worst = max(psi, key=psi.get) if psi else None
        live = m["accuracy"]["live"]
        ratio = m["cache_hit_ratio"]
        table.add_row(
            m["name"],
            m["version"],
            f"{m['requests']:.0f}",
            f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}" if m["p99_ms"] is not None else "-",
            m["cache"] + (f" ({ratio:.2f})" if ratio is not None else ""),
            f"{psi[worst]:.2f} {worst}" if worst else "-",
            f"{live:.4f} ({m['accuracy']['labelled_requests']})" if live is not None else "-",
        )
    console.print(table)


def train_as_job(home: Path) -> None:
    env = {**os.environ, "MODELFLEET_HOME": str(home)}
    cli = [sys.executable, "-m", "modelfleet"]
    pipeline = str(Path(__file__).parent / "churn" / "pipeline.py")
    subprocess.run([*cli, "jobs", "submit", pipeline, "--param", "seed=0"], env=env, check=True)
    subprocess.run(
        [*cli, "worker", "--once", "--lease", "15"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run([*cli, "jobs", "show", "1"], env=env, check=True)


def ship(settings: Any, Xg_test: np.ndarray) -> None:
    from modelfleet.build.context import LOCAL_BASE, build
    from modelfleet.build.engines import find_engine
    from modelfleet.build.local import run_container
    from modelfleet.deploy import DeploySpec, render, write
    from modelfleet.refs import Stage

    engine = find_engine("auto")
    base = LOCAL_BASE
    if engine is not None and engine.name == "podman":
        exists = subprocess.run(["podman", "image", "exists", LOCAL_BASE], check=False)
        if exists.returncode != 0:
            from modelfleet.build.baseimage import make_base_image

            console.print("making the local base image (Debian minbase + python3, ~1 min)…")
            make_base_image(engine, tag=LOCAL_BASE)
    with mf.Registry.open(settings) as reg:
        result = build(
            reg,
            "cancer-gbt@qa",
            Stage.QA,
            out=settings.home / "build-cancer-gbt-qa",
            cache=settings.home / "build-cache",
            engine=engine,
            base=base,
        )
        version = reg.get("cancer-gbt@qa")
    console.print(
        f"SBOM: {result.sbom_components} components; scan: {result.vulnerability_summary}"
    )
    if result.image is None or engine is None:
        console.print(f"no container engine: the build context is in {result.context}")
    else:
        console.print(
            f"image {result.tag}: {result.image.size / 1e6:.1f} MB ({result.image.digest[:19]}…)"
        )
        with run_container(engine.name, result.tag) as container, Client(container.url) as client:
            label = client.predict("cancer-gbt", Xg_test[:1])["label"].tolist()
            uid = container.exec("id", "-u").stdout.strip()
        console.print(
            f"container answered at {container.url}: label {label} (uid {uid}, "
            "read-only root, no capabilities)"
        )
    onnx = version.artifact("onnx")
    for stage, extra in ((Stage.QA, {}), (Stage.PROD, {"autoscale": (2, 8), "queue_target": 20})):
        spec = DeploySpec(
            model=version.name,
            version=version.version,
            variant=version.variant.value,
            environment=stage,
            image=result.tag.replace("-qa", f"-{stage.value}"),
            artifact_sha256=onnx.sha256 if onnx else "",
            metrics=dict(version.metrics),
            **extra,
        )  # type: ignore[arg-type]
        files = write(render(spec), settings.home / "manifests" / stage.value)
        console.print(f"{stage.value}: {len(files)} manifests in {files[0].parent}")


def _sample_sum(text: str, name: str, selector: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and selector in line
    )


def main() -> int:
    home = Path(os.environ.get("MODELFLEET_HOME", ".demo/home"))
    shutil.rmtree(home, ignore_errors=True)
    settings = load_settings(home=home)
    started = time.monotonic()
    console.rule("1. train: the churn pipeline as a job on the queue, run by a local worker")
    train_as_job(home)
    gbt, Xg_train, Xg_test, _, yg_test, gbt_acc = train_tabular()
    net, Xn_train, Xn_test, _, yn_test, net_acc = train_torch()
    console.print(f"cancer-gbt test accuracy {gbt_acc:.4f}; digits-mlp test accuracy {net_acc:.4f}")

    console.rule("2. register (stored safely, frozen to ONNX, verified against the source)")
    for model, name, X_train, X_test, acc, task in (
        (gbt, "cancer-gbt", Xg_train, Xg_test, gbt_acc, None),
        (net, "digits-mlp", Xn_train, Xn_test, net_acc, "classification"),
    ):
        version = mf.register(
            model,
            name=name,
            sample_input=X_test[:200],
            metrics={"accuracy": acc},
            params={"rows": len(X_train)},
            tags={"demo": "true"},
            task=task,
            training_data=X_train,
            settings=settings,
        )
        record = version.verification or {}
        console.print(
            f"{version.ref}: {version.signature.describe()}  verified: max_abs_diff="
            f"{record['max_abs_diff']:.2e}, label_agreement={record['label_agreement']:.4f}"
        )

    console.rule("3. quantize (accepted only within 0.01 accuracy of fp32)")
    for note in quantize_all("cancer-gbt:1", Xg_test, yg_test, settings):
        console.print(note)
    for note in quantize_all("digits-mlp:1", Xn_test, yn_test, settings):
        console.print(note)

    console.rule("4. promote to qa behind a requirement")
    for name in ("churn", "cancer-gbt", "digits-mlp"):
        with mf.Registry.open(settings) as reg:
            versions = reg.versions(name)
        smallest = min(
            versions, key=lambda v: v.artifact("onnx").size if v.artifact("onnx") else 1 << 60
        )
        event = mf.promote(
            smallest.ref,
            to="qa",
            require=["accuracy>=0.9"],
            reason="demo: smallest graph within tolerance",
            settings=settings,
        )
        console.print(f"{name}@qa -> {name}:{event.version} ({event.reason})")

    console.rule("5. summary")
    console.print(summary(settings))

    console.rule("6. ship: image per model x version x environment, run it, Kubernetes manifests")
    ship(settings, Xg_test)

    console.rule("7. serve the qa versions and call them (V2 JSON, V2 binary via the SDK, v1)")
    data = {"Xg_test": Xg_test, "yg_test": yg_test, "Xn_test": Xn_test, "yn_test": yn_test}
    serve_and_call(home, data)
    console.print(f"registry: {home}  (try: modelfleet --home {home} versions digits-mlp)")
    console.print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
