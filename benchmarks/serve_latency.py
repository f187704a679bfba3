"""How fast `deepfake-detector serve` answers: upload → JSON for a 256 px face crop, over real HTTP.

    python benchmarks/serve_latency.py [--model-name compact_cnn] [--image-size 128] [--requests 200]

Builds the model of params.yaml (untrained: speed does not depend on the weights) into a temp file,
starts the real command (`deepfake-detector serve --threshold 0.5` on a loopback port) and measures
from this process, with a keep-alive connection per client (TCP_NODELAY set, as browsers and
requests/urllib3 set it):

* ``sequential``: ``--requests`` requests one after another after 20 of warm-up, face detection on
  (the default) and off (``detect=false``): p50, p95 and mean ms (goal: p50 <= 150, p95 <= 400 with
  detection), and the server's CPU ms per request;
* ``concurrent``: requests per second with 4 clients at once (each its own connection);
* ``bare_predict_on_batch``: ``model.predict_on_batch`` on one ready float32 image in this process,
  the model's own rate, measured in blocks interleaved with the sequential requests (A, B, A, B ...)
  so both see the same machine load; ``over_bare`` is serve's rate over it;
* ``without_client_nodelay``: p50 of a few requests from a client that leaves Nagle on (why a
  client must not: its body waits for the server's delayed ACK).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import emit, machine, model_arguments, project_env, untrained_model

import cv2
import numpy as np
import psutil

REAL_FACES = Path("/work/shared/data/faces140k-sample.zip")
BOUNDARY = "serve-latency-boundary"


def face_crop(side: int = 256) -> tuple[bytes, str]:
    """A JPEG face crop ``side`` px square: a real one from the shared sample if present, else the
    portrait matplotlib ships, cropped around her face."""
    if REAL_FACES.exists():
        with zipfile.ZipFile(REAL_FACES) as bundle:
            name = sorted(n for n in bundle.namelist() if n.lower().endswith(".jpg"))[0]
            image = cv2.imdecode(np.frombuffer(bundle.read(name), np.uint8), cv2.IMREAD_COLOR)
        source = "faces140k-sample"
    else:
        from matplotlib import cbook

        image = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))[40:440, 60:460]
        source = "grace_hopper.jpg (matplotlib)"
    image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), source


def multipart(data: bytes, detect: bool) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="detect"\r\n\r\n{str(detect).lower()}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="face.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class Client:
    """One keep-alive HTTP connection; ``post`` returns seconds from sending to the parsed answer."""

    def __init__(self, port: int, nodelay: bool = True):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.nodelay = nodelay
        self.connect()

    def connect(self):
        self.connection.connect()
        if self.nodelay:
            self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, body: bytes) -> http.client.HTTPResponse:
        self.connection.request("POST", "/api/predict", body,
                                {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        return self.connection.getresponse()

    def post(self, body: bytes) -> float:
        started = time.perf_counter()
        try:
            response = self._send(body)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # uvicorn closes a connection idle for 5 s (keep-alive timeout); as a browser would, reconnect
            self.connection.close()
            self.connect()
            started = time.perf_counter()
            response = self._send(body)
        payload = response.read()
        if response.status != 200:
            raise SystemExit(f"serve answered {response.status}: {payload[:300]!r}")
        return time.perf_counter() - started

    def close(self):
        self.connection.close()


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "mean_ms": round(float(ms.mean()), 1), "requests": len(ms)}


def server_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def start_server(model: Path, port: int) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "deepfake-detector"), "serve", "--model", str(model),
               "--threshold", "0.5", "--port", str(port)]
    log = model.with_name("serve.log")  # a file, not a pipe nobody reads while the server runs
    process = subprocess.Popen(command, env=project_env(), stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    process.kill()
    raise SystemExit("serve did not start in 300 s")


def main() -> None:
    parser = model_arguments(__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    from deepfake_detector.model import modelfile

    scratch = Path(tempfile.mkdtemp(prefix="serve_latency."))
    model_path = untrained_model(scratch, args.model_name, args.image_size)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_server(model_path, port)
    try:
        watched = psutil.Process(server.pid)
        crop, source = face_crop()
        bodies = {detect: multipart(crop, detect) for detect in (True, False)}
        model = modelfile.load(model_path)[0]
        one = np.random.default_rng(0).uniform(
            0, 255, (1, args.image_size, args.image_size, 3)).astype("float32")
        model.predict_on_batch(one)  # traced before the client connects
        client = Client(port)
        for _ in range(20):  # warm-up: both paths, and the bare model
            client.post(bodies[True]), client.post(bodies[False]), model.predict_on_batch(one)

        blocks = 4
        sequential, bare_seconds, cpu = {True: [], False: []}, [], {True: 0.0, False: 0.0}
        for _ in range(blocks):  # interleaved: serve, bare model, serve without detection, ...
            for detect in (True, False):
                before = server_cpu(watched)
                sequential[detect] += [client.post(bodies[detect]) for _ in range(args.requests // blocks)]
                cpu[detect] += server_cpu(watched) - before
                started = time.perf_counter()
                for _ in range(args.requests // blocks // 2):
                    model.predict_on_batch(one)
                bare_seconds.append((time.perf_counter() - started) / (args.requests // blocks // 2))
        client.close()
        bare_rate = 1 / statistics.median(bare_seconds)

        concurrent = {}
        for detect in (True, False):
            clients, per_client = [Client(port) for _ in range(4)], 25
            threads = [threading.Thread(target=lambda c=c: [c.post(bodies[detect])
                                                             for _ in range(per_client)])
                       for c in clients]
            started, before = time.perf_counter(), server_cpu(watched)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            concurrent["with_detection" if detect else "no_detect"] = {
                "clients": 4, "requests": 4 * per_client,
                "requests_per_second": round(4 * per_client / seconds, 1),
                "server_cpu_seconds": round(server_cpu(watched) - before, 2),
                "wall_seconds": round(seconds, 2)}
            for c in clients:
                c.close()

        nagle = Client(port, nodelay=False)
        nagle_times = [nagle.post(bodies[False]) for _ in range(20)]
        nagle.close()
    finally:
        server.send_signal(2)
        server.wait(60)
        shutil.rmtree(scratch, ignore_errors=True)

    results = {}
    for detect in (True, False):
        stats = percentiles(sequential[detect])
        stats["server_cpu_ms_per_request"] = round(cpu[detect] / len(sequential[detect]) * 1e3, 1)
        stats["requests_per_second"] = round(len(sequential[detect]) / sum(sequential[detect]), 1)
        stats["over_bare"] = round(stats["requests_per_second"] / bare_rate, 3)
        results["with_detection" if detect else "no_detect"] = stats
    emit({
        "model": args.model_name, "image_size": args.image_size, "crop": {"side": 256, "source": source,
                                                                          "jpeg_bytes": len(crop)},
        "machine": machine(),  # load average at the end
        "sequential": results,
        "goal": {"p50_ms": 150, "p95_ms": 400,
                 "met": (results["with_detection"]["p50_ms"] <= 150
                         and results["with_detection"]["p95_ms"] <= 400)},
        "concurrent": concurrent,
        "bare_predict_on_batch": {"images_per_second_one_image": round(bare_rate, 1),
                                  "ms_per_image": round(1e3 / bare_rate, 2)},
        "without_client_nodelay": percentiles(nagle_times),
    })


if __name__ == "__main__":
    main()
