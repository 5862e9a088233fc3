"""Exports: a SavedModel that answers encoded image bytes like `predict`, and TFLite like Keras."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from typer.testing import CliRunner

from cli import app
from multitask.config import ModelConfig
from multitask.errors import UserError
from multitask.export import export
from multitask.images import load_rgb
from multitask.model import build_model
from multitask.pipeline import normalise, resize_image
from multitask.predict import predict


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(), 3, 32)  # the default preset: its custom layers must export too


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate([(40, 30), (64, 64), (20, 50)]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _model_input(path, policy):
    return normalise(resize_image(load_rgb(path), 32, policy)).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["stretch", "letterbox"])
def test_the_saved_model_answers_image_bytes_as_predict_does(model, images, tmp_path, policy):
    metadata = {"class_names": ["a", "b", "c"], "image_size": 32, "resize": policy}
    out = export(model, metadata, "saved_model", tmp_path / "exported")
    assert json.loads((out / "preprocessing.json").read_text()) == metadata
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    answer = {k: v.numpy() for k, v in serve(images=tf.constant([p.read_bytes() for p in images])).items()}

    keras_scores = model.predict(np.stack([_model_input(p, policy) for p in images]), verbose=0)["label"]
    np.testing.assert_allclose(answer["label_scores"], keras_scores, atol=1e-4)
    for row, box in zip(predict(model, images, metadata), answer["box"], strict=True):
        assert [row["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] == pytest.approx(box, abs=0.006)


@pytest.mark.slow
def test_tflite_answers_as_the_keras_model_does(model, images, tmp_path):
    metadata = {"class_names": ["a", "b", "c"], "image_size": 32, "resize": "letterbox"}
    out = export(model, metadata, "tflite", tmp_path / "exported")
    interpreter = tf.lite.Interpreter(model_path=str(out / "model.tflite"))
    run = interpreter.get_signature_runner()
    for path in images:
        image = _model_input(path, "letterbox")[None]
        answer, expected = run(image=image), model.predict(image, verbose=0)
        for head in ("label", "box"):
            np.testing.assert_allclose(answer[head], expected[head], atol=1e-4)


def test_an_unknown_format_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["export", "--format", "onnx", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: unknown export format 'onnx' (known: saved_model, tflite)"
    assert not (tmp_path / "x").exists()


def test_export_refuses_a_folder_it_did_not_write(tmp_path):
    """`--out ~/project` must not delete the project: one line, exit 2, before any model is fetched."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["export", "--model", "absent@champion", "--format", "tflite",
                                      "--out", str(project)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --out {project} holds files an export did not write (notes.txt); the export replaces the "
        "folder whole: choose an empty or new folder, or pass --force to replace it"]
    assert (project / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["export", "--format", "tflite", "--out", str(tmp_path / "file"), "--force"])
    assert result.exit_code == 2 and "is not a folder" in result.stderr
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.slow
def test_an_earlier_export_is_replaced_and_force_replaces_any_folder(model, tmp_path):
    metadata = {"class_names": ["a", "b", "c"], "image_size": 32, "resize": "stretch"}
    out = tmp_path / "exported"
    export(model, metadata, "tflite", out)
    export(model, metadata, "saved_model", out)  # an earlier export of either format is ours to replace
    assert (out / "saved_model.pb").exists() and not (out / "model.tflite").exists()
    (out / "README.md").write_text("a user's file")
    with pytest.raises(UserError, match="README.md"):
        export(model, metadata, "tflite", out)
    assert (out / "README.md").exists() and (out / "saved_model.pb").exists()
    export(model, metadata, "tflite", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "preprocessing.json"]
