"""retrain_flow with its gate, prediction (library, CLI, flow), and model commands."""

import csv
import io
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from flows.predict import predict_flow
from flows.retrain import retrain_flow
from multitask import registry
from multitask.datasets.shapes import CLASS_NAMES
from multitask.pipeline import box_to_pixels
from multitask.predict import predict, predictions_csv, spreadsheet_safe

from helpers import DEFAULT_MODEL, tiny_config, versions

NO_FLOORS = ("gate.min_accuracy=0", "gate.min_mean_iou=0")



def _champion() -> str:
    return registry.champion("multitask-shapes").version


@pytest.fixture(scope="module")
def first(prefect_server, module_workspace):
    # an untrained-looking first model: a learning rate so small that it barely moves
    return retrain_flow(config=tiny_config(*NO_FLOORS, "train.learning_rate=1e-9"))


def test_first_model_is_promoted_when_the_floors_are_met(first):
    assert first["decision"] == "promoted" and first["champion"] == first["challenger"] == "1"
    assert "no champion yet" in first["reason"] and _champion() == "1"


def test_nothing_changed_means_nothing_to_retrain(first):
    again = retrain_flow(config=tiny_config(*NO_FLOORS, "train.learning_rate=1e-9"))
    assert again["decision"] == "nothing to retrain" and again["challenger"] == "1"
    assert "train_model" not in again["steps"] and versions() == ["1"]


@pytest.fixture(scope="module")
def kept_out(first):
    """A challenger below the floor: kept out, after the champion was scored on the test split."""
    before = _champion()
    result = retrain_flow(config=tiny_config("gate.min_accuracy=1.0", "train.seed=1"))
    return before, result


def test_challenger_below_the_floor_is_kept_out(kept_out):
    before, result = kept_out
    assert result["decision"] == "kept" and "below floor" in result["reason"]
    assert result["steps"]["evaluate_registered"] == "Completed"  # the champion, on this split
    assert _champion() == before
    tags = registry.show(f"multitask-shapes/{result['challenger']}")["tags"]
    assert tags["gate.decision"] == "kept out" and "challenger" in registry.show(
        f"multitask-shapes/{result['challenger']}")["aliases"]


def test_better_challenger_is_promoted_and_compared_per_head(kept_out):
    # the default model: five epochs of the seed model on 40 images beat an untrained one on no head
    result = retrain_flow(config=tiny_config(*NO_FLOORS, DEFAULT_MODEL, "gate.tolerance=1.0", "train.epochs=5",
                                             "train.learning_rate=0.003"))
    assert set(result["metrics"]) == {"challenger", "champion"}
    assert result["steps"]["evaluate_registered"] == "Cached"  # v1 was scored on this split by `kept_out`
    assert result["decision"] == "promoted", result["reason"]
    assert _champion() == result["challenger"]
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        latest = {a.key: a for a in client.read_latest_artifacts()}
    assert {"gate-comparison", "gate-decision"} <= set(latest)
    decision = latest["gate-decision"].data  # both models' predictions, side by side
    assert re.search(rf"\| champion v\d+ \| challenger v{result['challenger']} \|", decision)
    assert decision.count("](data:image/png;base64,") == 2


def _constant_model(box, num_classes=3) -> keras.Model:
    """Outputs a fixed box and class 1, whatever the image: known answers for mapping tests."""
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    logit = np.log(np.array(box) / (1 - np.array(box)))
    box_out = keras.layers.Dense(4, activation="sigmoid", kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(logit), name="box")(pooled)
    label_bias = np.array([0.0, 5.0, 0.0][:num_classes])
    label_out = keras.layers.Dense(num_classes, activation="softmax", kernel_initializer="zeros",
                                   bias_initializer=keras.initializers.Constant(label_bias), name="label")(pooled)
    return keras.Model(inputs, {"label": label_out, "box": box_out})


@pytest.mark.parametrize(("policy", "expected"), [
    # 200 wide x 100 high. Stretch: x scales by 200, y by 100.
    ("stretch", {"xmin": 50.0, "ymin": 25.0, "xmax": 150.0, "ymax": 75.0}),
    # Letterbox to 32: the image is 32x16 with 8 rows of padding above; y = (v*32 - 8) / 16 * 100.
    ("letterbox", {"xmin": 50.0, "ymin": 0.0, "xmax": 150.0, "ymax": 100.0}),
])
def test_predicted_box_is_in_the_original_images_pixels(tmp_path, policy, expected):
    Image.new("RGB", (200, 100), (30, 60, 90)).save(tmp_path / "wide.png")
    model = _constant_model([0.25, 0.25, 0.75, 0.75])
    [row] = predict(model, [tmp_path / "wide.png"], {"class_names": ["a", "b", "c"], "image_size": 32,
                                                      "resize": policy})
    assert row["label"] == "b" and row["score"] > 0.9
    assert row["box"] == pytest.approx(expected, abs=0.05)


def test_letterbox_inverse_for_a_tall_image():
    # 50 wide x 100 high into 32: 16x32, padded 8 columns left; a box over the middle half
    box = [0.25, (8 + 4) / 32, 0.75, (8 + 12) / 32]
    assert box_to_pixels(box, 100, 50, 32, "letterbox") == pytest.approx([12.5, 25.0, 37.5, 75.0], abs=0.01)


def test_an_inverted_predicted_box_comes_out_ordered():
    # the seed preset's four sigmoid outputs can put max before min
    assert box_to_pixels([0.75, 0.6, 0.25, 0.2], 100, 50, 32) == pytest.approx([10.0, 25.0, 30.0, 75.0])


def test_cli_predict_and_unknown_alias(first, tmp_path):
    Image.new("RGB", (90, 40), (200, 30, 30)).save(tmp_path / "a.png")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "--model", "multitask-shapes@champion", str(tmp_path / "a.png"), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["label"] in CLASS_NAMES and 0 < row["score"] <= 1
    assert 0 <= row["box"]["xmin"] <= row["box"]["xmax"] <= 90 and 0 <= row["box"]["ymin"] <= row["box"]["ymax"] <= 40
    missing = runner.invoke(app, ["predict", "--model", "multitask-shapes@nope", str(tmp_path / "a.png")])
    assert missing.exit_code == 2 and "no registered model 'multitask-shapes@nope'" in missing.stderr


def test_predict_flow_writes_csv_and_json(first, tmp_path):
    for i, size in enumerate([(64, 64), (120, 50), (30, 90)]):
        Image.new("RGB", size, (i * 60, 90, 40)).save(tmp_path / f"img{i}.png")
    result = predict_flow(model="multitask-shapes@champion", images=str(tmp_path), output=str(tmp_path / "out"))
    assert result["count"] == 3
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["img0.png", "img1.png", "img2.png"]
    assert (tmp_path / "out" / "predictions.csv").read_text().splitlines()[0] == "image,label,score,xmin,ymin,xmax,ymax"


def test_csv_cells_from_user_text_never_become_formulas(first, tmp_path, monkeypatch):
    """A folder or label starting with = + - @ would run as a formula in a spreadsheet."""
    monkeypatch.chdir(tmp_path)
    folder = Path("=HYPERLINK(1)")
    folder.mkdir()
    Image.new("RGB", (40, 40), (90, 90, 40)).save(folder / "a.png")
    predict_flow(model="multitask-shapes@champion", images=str(folder), output="out")
    [row] = list(csv.DictReader(io.StringIO(Path("out/predictions.csv").read_text())))
    assert row["image"] == "'=HYPERLINK(1)/a.png"
    written = predictions_csv([{"image": "a.png", "label": "@SUM(A1)", "score": 0.5,
                                "box": {"xmin": -1.0, "ymin": 0.0, "xmax": 2.0, "ymax": 3.0}}])
    cells = list(csv.reader(io.StringIO(written.decode())))[1]
    assert cells == ["a.png", "'@SUM(A1)", "0.5", "-1.0", "0.0", "2.0", "3.0"]  # numbers stay numbers
    for sneaky in ("  =1+1", "\uff1dcmd|' /C calc'!A0", "\n=1"):
        assert spreadsheet_safe(sneaky) == "'" + sneaky
    assert spreadsheet_safe("a = b") == "a = b"


def test_models_show_and_manual_promotion_records_who_and_why(first):
    runner = CliRunner()
    result = runner.invoke(app, ["models", "promote", "multitask-shapes/1", "--reason", "rollback", "--by", "ana"])
    assert result.exit_code == 0, result.output
    shown = json.loads(runner.invoke(app, ["models", "show", "multitask-shapes@champion", "--json"]).stdout)
    assert shown["version"] == "1" and shown["tags"]["promoted_by"] == "ana"
    assert shown["tags"]["promotion_reason"] == "rollback"


def test_cli_evaluate_a_registered_model(first):
    result = CliRunner().invoke(app, ["evaluate", "--model", "multitask-shapes/1", "--dataset", "shapes",
                                      "--set", "data.train_size=20", "--set", "data.validation_size=5",
                                      "--set", "data.test_size=12", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])["metrics"]
    assert set(metrics) >= {"accuracy", "mean_iou", "iou50", "loss"}


def test_cli_exports_a_registered_model_that_answers_like_predict(first, tmp_path):
    import tensorflow as tf

    image = tmp_path / "images" / "one.png"
    image.parent.mkdir()
    Image.new("RGB", (90, 40), (30, 160, 60)).save(image)
    result = CliRunner().invoke(app, ["export", "--model", "multitask-shapes@champion", "--format", "saved_model",
                                      "--out", str(tmp_path / "exported")])
    assert result.exit_code == 0, result.output
    serve = tf.saved_model.load(str(tmp_path / "exported")).signatures["serving_default"]
    answer = serve(images=tf.constant([image.read_bytes()]))
    predicted = CliRunner().invoke(app, ["predict", str(image), "--json"])
    [row] = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert CLASS_NAMES[int(np.argmax(answer["label_scores"][0]))] == row["label"]
    assert float(np.max(answer["label_scores"][0])) == pytest.approx(row["score"], abs=1e-4)
    box = [row["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]
    assert box == pytest.approx(answer["box"][0].numpy(), abs=0.006)


def _post(url: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.server
def test_the_scoring_server_answers_images_as_predict_does(first, tmp_path):
    """`multitask serve` (MLflow's scoring server) on loopback: started, asked, compared, stopped."""
    import base64
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    paths = [tmp_path / "wide.png", tmp_path / "tall.jpg"]
    Image.new("RGB", (90, 40), (30, 160, 60)).save(paths[0])
    Image.new("RGB", (30, 70), (200, 40, 90)).save(paths[1])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port),
                               "--set", "serve.max_request_pixels=10000"], start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert server.poll() is None, server.stdout.read()[-3000:]
                time.sleep(1)
        url = f"http://127.0.0.1:{port}/invocations"
        images = [[base64.b64encode(p.read_bytes()).decode()] for p in paths]
        status, answer = _post(url, {"dataframe_split": {"columns": ["image"], "data": images}})
        assert status == 200, answer
        expected = predict(registry.load_model("multitask-shapes@champion"), paths,
                           registry.load_registered("multitask-shapes@champion")[1])
        assert answer["predictions"] == [{"label": row["label"], "score": row["score"], **row["box"]}
                                         for row in expected]

        status, refused = _post(url, {"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"]]}})
        assert status == 400 and "row 0" in refused["message"] and "Traceback" not in refused["message"]
        status, refused = _post(url, {"dataframe_split": {"columns": ["picture"], "data": images}})
        assert status == 400 and "missing inputs ['image']" in refused["message"]  # MLflow's schema check
        status, refused = _post(url, {"dataframe_split": {"columns": ["image"], "data": images * 2}})  # 11,400 px
        assert status == 400 and refused["message"].endswith(
            "the request's 4 images declare 11,400 pixels in all, over the budget of 10,000 per request "
            "(serve.max_request_pixels): send fewer or smaller images")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_the_pyfunc_model_answers_in_python_too(first, tmp_path):
    import base64

    import mlflow
    import pandas as pd

    image = tmp_path / "one.png"
    Image.new("RGB", (50, 80), (10, 90, 200)).save(image)
    registry.client()
    loaded = mlflow.pyfunc.load_model("models:/multitask-shapes@champion")
    frame = pd.DataFrame({"image": [base64.b64encode(image.read_bytes()).decode()]})
    [row] = predict(registry.load_model("multitask-shapes@champion"), [image],
                    registry.load_registered("multitask-shapes@champion")[1])
    assert loaded.predict(frame) == [{"label": row["label"], "score": row["score"], **row["box"]}]
