"""P8 serving: MLflow's scoring server (`multitask serve`) against in-process prediction, and TFLite.

Trains a small default-preset model in a temporary workspace, serves it on loopback, and times
sequential requests of 1 and 32 images (one client), the same images through `predict_images`
in this process, and single images through the TFLite export. The last stdout line is one JSON object;
bench/run.py runs this script in a process of its own (`p8`).

    python bench/serving.py [--requests 30]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from commands import last_json
from PIL import Image

TRAIN = ["data.train_size=256", "data.validation_size=64", "data.test_size=64", "train.epochs=1"]


def _summary(seconds: list[float], images: int) -> dict:
    ordered = sorted(seconds)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
            "requests_per_s": round(len(ordered) / sum(ordered), 2),
            "images_per_s": round(images * len(ordered) / sum(ordered), 1)}


def _timed(call, repeats: int) -> list[float]:
    for _ in range(3):  # warm-up: graphs traced, connections open
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def _png(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _serve(env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                return server
        except OSError:
            time.sleep(1)
    raise RuntimeError("the scoring server did not answer /ping within 300 s")


def p8() -> dict:
    """This script in its own process (it trains, serves and exports in a workspace of its own), as figure P8."""
    serving = last_json([sys.executable, str(Path(__file__).resolve())])
    ratio = serving["server_batch1"]["p50_ms"] / serving["in_process_batch1"]["p50_ms"]
    return {"ratio": round(ratio, 3), "goal": "reported (server p50 / in-process p50, 1 image)", **serving}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    env = {**os.environ, "MULTITASK_HOME": str(home / "ws"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    os.environ.update(env)
    train = [sys.executable, "-m", "cli", "train", "--json", *(a for s in TRAIN for a in ("--set", s))]
    subprocess.run(train, env=env, check=True, capture_output=True)

    from multitask import registry
    from multitask.export import export
    from multitask.images import load_rgb
    from multitask.pipeline import normalise, resize_image
    from multitask.predict import predict_images

    rng = np.random.default_rng(0)
    encoded = [_png(rng) for _ in range(32)]
    decoded = [load_rgb(io.BytesIO(raw)) for raw in encoded]
    model, metadata = registry.load_registered("multitask-shapes@champion")
    result: dict = {"model_input": int(metadata["image_size"]), "image": "128 x 96 PNG", "requests": args.requests}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _serve(env, port)
    try:
        for batch in (1, 32):
            body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [
                [base64.b64encode(raw).decode()] for raw in encoded[:batch]]}}).encode()

            def post(body: bytes = body) -> None:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()

            result[f"server_batch{batch}"] = _summary(_timed(post, args.requests), batch)
            result[f"in_process_batch{batch}"] = _summary(
                _timed(lambda n=batch: predict_images(model, decoded[:n], metadata), args.requests), batch)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    import tensorflow as tf

    out = export(model, metadata, "tflite", home / "tflite")
    run = tf.lite.Interpreter(model_path=str(out / "model.tflite")).get_signature_runner()
    size, policy = int(metadata["image_size"]), metadata.get("resize", "stretch")
    image = normalise(resize_image(decoded[0], size, policy)).numpy()[None]
    result["tflite_single"] = _summary(_timed(lambda: run(image=image), 10 * args.requests), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
