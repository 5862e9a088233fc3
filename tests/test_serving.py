"""The served model: loaded without pickle, refused when registered with one, and a request's
cost bounded before anything is decoded (the pyfunc model and the SavedModel export)."""

import base64
import io
import struct
import zlib
from pathlib import Path

import keras
import mlflow
import pandas as pd
import pytest
import tensorflow as tf
from mlflow.exceptions import MlflowException
from PIL import Image

from multitask import registry, serving
from multitask.config import ServeConfig
from multitask.image_headers import declared_pixels
from multitask.registry.runs import log_served_model

METADATA = {"class_names": ["a", "b", "c"], "image_size": 32, "resize": "stretch"}


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def encoded(size=(40, 30), fmt="PNG", **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 60, 30)).save(out, format=fmt, **save)
    return out.getvalue()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, {"label": keras.layers.Dense(3, activation="softmax", name="label")(pooled),
                                 "box": keras.layers.Dense(4, activation="sigmoid", name="box")(pooled)})
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def _frame(*images: bytes) -> pd.DataFrame:
    return pd.DataFrame({"image": [base64.b64encode(image).decode() for image in images]})


def _predictor(keras_file: Path, **config) -> serving.ImagePredictor:
    return serving.ImagePredictor(keras.saving.load_model(keras_file), dict(METADATA), ServeConfig(**config))


def test_a_request_over_the_pixel_budget_is_refused_before_decoding(keras_file, monkeypatch):
    """16 rows of 7071 x 7071 (a black PNG of that size is about 146 KB): gigabytes once decoded."""
    decoded = []
    monkeypatch.setattr(serving, "load_rgb", lambda *a: decoded.append(a) or pytest.fail("decoded"))
    refused = (r"the request's 16 images declare 799,984,656 pixels in all, over the budget of 64,000,000 per "
               r"request \(serve.max_request_pixels\)")
    with pytest.raises(MlflowException, match=refused):
        _predictor(keras_file).predict(_frame(*[png_declaring(7071, 7071)] * 16))
    assert decoded == []


def test_an_image_over_the_models_pixel_limit_is_refused(keras_file):
    predictor = _predictor(keras_file)
    predictor.max_pixels = 1000
    with pytest.raises(MlflowException, match=r"row 1 declares 40x30 = 1,200 pixels, over the limit of 1,000"):
        predictor.predict(_frame(encoded((20, 20)), encoded((40, 30))))


@pytest.mark.parametrize(("fmt", "save"), [("TIFF", {}), ("PDF", {}), ("ICO", {})])
def test_formats_other_than_the_allowed_ones_are_never_opened(keras_file, fmt, save):
    with pytest.raises(MlflowException, match=r"row 0 is not a readable image \(PNG, JPEG, BMP, WebP or GIF\)"):
        _predictor(keras_file).predict(_frame(encoded((16, 16), fmt, **save)))


def test_rows_are_decoded_one_batch_at_a_time(keras_file, monkeypatch):
    batches = []
    real = serving.predict_images
    monkeypatch.setattr(serving, "predict_images", lambda model, images, metadata: batches.append(len(images))
                        or real(model, images, metadata))
    allowed = [encoded((12, 9), fmt) for fmt in ("PNG", "JPEG", "BMP", "WEBP", "GIF")]
    rows = _predictor(keras_file, batch_size=4).predict(_frame(*allowed * 2))
    assert batches == [4, 4, 2] and len(rows) == 10
    assert {row["xmax"] <= 12 and row["ymax"] <= 9 for row in rows} == {True}


def _log(keras_file: Path, name: str, python_model=None) -> str:
    """Register `keras_file` as a new version of `name`: as versions are now, or (given a
    `python_model`) the way they were before, pickled."""
    c = registry.client()
    experiment = c.get_experiment_by_name(name) or c.get_experiment(c.create_experiment(name))
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        if python_model is None:
            info = log_served_model(keras_file, METADATA)
        else:
            info = mlflow.pyfunc.log_model(name="model", python_model=python_model, model_config=METADATA,
                                           artifacts={"keras_model": str(keras_file)}, metadata=METADATA)
    if not c.search_registered_models(filter_string=f"name = '{name}'"):
        c.create_registered_model(name)
    return str(c.create_model_version(name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id).version)


class Planted(mlflow.pyfunc.PythonModel):
    """Unpickling this runs code: it creates the file `marker` (any code could run instead)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def predict(self, context, model_input, params=None):
        return []

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_serve_refuses_a_version_registered_with_a_pickled_model(workspace, keras_file, tmp_path):
    marker = tmp_path / "ran"
    version = _log(keras_file, "planted", Planted(marker))
    marker.unlink(missing_ok=True)  # MLflow itself loads it while logging (to infer its requirements)
    from typer.testing import CliRunner

    from cli import app

    # in this process: the refusal comes before `serve` hands the process over to MLflow
    served = CliRunner().invoke(app, ["serve", "--model", f"planted/{version}", "--port", "1"])
    assert served.exit_code == 2, served.output
    assert served.stderr.strip().splitlines()[-1] == (
        f"error: planted/{version} was registered with a pickled Python model, which serving would unpickle: "
        f"re-register it with `multitask models reregister planted/{version}`, or retrain")
    assert not marker.exists(), "the pickled object was loaded"


def test_reregister_gives_a_version_that_loads_without_pickle_and_keeps_its_aliases(workspace, keras_file, tmp_path,
                                                                                     monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    class OldPredictor(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return []

    old = _log(keras_file, "old", OldPredictor())
    registry.client().set_registered_model_alias("old", "champion", old)
    result = CliRunner().invoke(app, ["models", "reregister", f"old/{old}"])
    assert result.exit_code == 0, result.output
    new = registry.champion("old").version
    assert int(new) == int(old) + 1 and f"old version {old} is registered again as version {new}" in result.stdout
    again = CliRunner().invoke(app, ["models", "reregister", f"old/{new}"])
    assert again.exit_code == 2 and "already registered without a pickled model" in again.stderr

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(MlflowException, match="Deserializing model using pickle is disallowed"):
        mlflow.pyfunc.load_model(f"models:/old/{old}")
    image = tmp_path / "one.png"
    image.write_bytes(encoded((50, 80)))
    answer = mlflow.pyfunc.load_model("models:/old@champion").predict(_frame(image.read_bytes()))
    expected = _predictor(keras_file).predict(_frame(image.read_bytes()))
    assert answer == expected and len(answer) == 1
    assert registry.show(f"old/{new}")["tags"]["multitask.reregistered_from"] == old


@pytest.mark.parametrize(("fmt", "save"), [
    ("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("BMP", {}),
    ("WEBP", {"lossless": False}), ("WEBP", {"lossless": True}), ("WEBP", {"exif": b"Exif\0\0MM\0*\0\0\0\x08\0\0"}),
])
def test_the_graph_reads_the_size_of_each_format_it_takes_from_its_header(fmt, save):
    for size in [(40, 30), (1, 300), (301, 7)]:
        assert int(declared_pixels(tf.constant(encoded(size, fmt, **save)))) == size[0] * size[1], (fmt, size)


def _gif_declaring_one_pixel(size: tuple[int, int]) -> bytes:
    """A GIF whose frame is `size` but whose logical screen (bytes 6-9) says 1 x 1."""
    data = bytearray(encoded(size, "GIF"))
    data[6:10] = b"\x01\x00\x01\x00"
    return bytes(data)


@pytest.mark.parametrize("data", [encoded((8, 8), "TIFF"), encoded((8, 8), "GIF"), _gif_declaring_one_pixel((50, 40)),
                                  b"", b"\x89PNG", b"hello, not an image"])
def test_the_graph_answers_minus_one_for_anything_else(data):
    """GIF too: TensorFlow decodes a GIF at its largest frame's size, which no header field states."""
    assert int(declared_pixels(tf.constant(data))) == -1


@pytest.mark.slow
def test_the_saved_model_refuses_an_image_over_the_limit_before_decoding(keras_file, tmp_path):
    from multitask.export import export

    out = export(keras.saving.load_model(keras_file), {**METADATA, "max_pixels": 10_000}, "saved_model",
                 tmp_path / "exported")
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert serve(images=tf.constant([encoded((100, 100))]))["box"].shape == (1, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="over the limit of 10,000"):
        serve(images=tf.constant([png_declaring(50_000, 50_000)]))  # would allocate 7.5 GB
    for refused in (encoded((10, 10), "TIFF"), _gif_declaring_one_pixel((50, 40))):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"not a PNG, JPEG, BMP or WebP image"):
            serve(images=tf.constant([refused]))
