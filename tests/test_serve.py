"""`deepfake-detector serve`'s API through FastAPI's test client, on the real tiny model the pipeline
trained: the rows equal `predict --format json`'s for an image and a video, bad and oversized files
get a 4xx with one line and the server goes on, 20 concurrent requests are all answered right, the
bounded queue turns the surplus away with 503, and uploads leave nothing behind."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from trained import run_cli

from deepfake_detector.core import paths
from deepfake_detector.apps import serve
from deepfake_detector.apps import webapp
from deepfake_detector.core.files import read_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(trained):
    running = serve.Service(trained / paths.MODEL)
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(webapp.build(service)) as test_client:
        yield test_client


def post(client, path: Path, name: str | None = None, **fields) -> "object":
    with open(path, "rb") as handle:
        return client.post("/api/predict", files={"file": (name or path.name, handle)},
                           data={k: str(v).lower() for k, v in fields.items()})


def predicted(project: Path, path: Path, *args: str) -> dict:
    """`deepfake-detector predict PATH --format json` in the project, with ``file`` as serve names it."""
    code, out, _ = run_cli(project, "predict", str(path), "--format", "json", *args)
    assert code == 0
    result = json.loads(out)
    for row in result["rows"]:
        row["file"] = path.name
    return result


def assert_same_rows(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs) and len(ours) > 0
    for mine, expected in zip(ours, theirs):
        assert ({k: v for k, v in mine.items() if k != "p_fake"}
                == {k: v for k, v in expected.items() if k != "p_fake"})
        assert mine["p_fake"] == pytest.approx(expected["p_fake"], abs=1e-6)


def test_health_and_the_model_facts_come_from_the_model_and_evaluate(client, service, trained):
    health = client.get("/api/health").json()
    threshold = read_json(trained / paths.THRESHOLD)["threshold"]
    assert health == {"status": "ok", "model": "compact_cnn", "image_size": service.scorer.image_size,
                      "threshold": threshold}
    facts = client.get("/api/model").json()
    metrics = read_json(trained / paths.EVAL_METRICS)
    assert facts["test_auc"] == metrics["test"]["roc_auc"]
    assert facts["validation_auc"] == metrics["validation"]["roc_auc"]
    assert facts["threshold"] == threshold and facts["model"] == "compact_cnn"
    assert facts["trained_on"] == "sample" and "generated sample" in facts["warning"]
    assert facts["limits"]["queue"] == serve.Limits().queue
    assert client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["requestBody"]


def test_an_image_gets_the_rows_predict_gives(client, service, trained, media):
    for path, args, form in ((media["face"], (), {}), (media["no_face"], (), {}),
                             (media["face"], ("--no-detect",), {"detect": False})):
        response = post(client, path, **form)
        assert response.status_code == 200, response.text
        ours, theirs = response.json(), predicted(trained, path, *args)
        assert_same_rows(ours["rows"], theirs["rows"])
        assert ours["model_sha256"] == theirs["model_sha256"] and ours["threshold"] == theirs["threshold"]
        assert set(ours) == set(theirs)
    assert [r["face"] for r in response.json()["rows"] if r["kind"] == "face"] == [False]  # --no-detect


def test_a_video_gets_the_rows_predict_gives_per_frame(client, trained, media):
    response = post(client, media["video"])
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    assert_same_rows(rows, predicted(trained, media["video"])["rows"])
    assert rows[-1]["kind"] == "file" and rows[-1]["frames"] == 3  # 3 s at 1 frame/s


def test_grad_cam_on_request_gives_one_overlay_per_face_row(client, service, media):
    plain = post(client, media["face"]).json()
    assert "explain" not in plain
    explained = post(client, media["face"], explain=True).json()
    assert explained["rows"] == plain["rows"]
    faces = [i for i, row in enumerate(plain["rows"]) if row["kind"] == "face"]
    assert [item["row"] for item in explained["explain"]] == faces
    import base64

    png = base64.b64decode(explained["explain"][0]["png"].split(",", 1)[1])
    overlay = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (service.scorer.image_size, service.scorer.image_size, 3)


@pytest.mark.parametrize("name, data, status, words", [
    ("notes.jpg", b"just some text, not a picture", 415, "not_image"),
    ("cut.jpg", None, 422, "truncated"),
    ("empty.png", b"", 422, "empty"),
    ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, 422, "unreadable"),
])
def test_a_bad_file_gets_a_4xx_with_one_line_and_the_server_goes_on(client, media, name, data, status, words):
    data = media["face"].read_bytes()[:4000] if data is None else data
    response = client.post("/api/predict", files={"file": (name, data)})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail.startswith(name) and words in detail and "\n" not in detail
    assert post(client, media["face"]).status_code == 200  # still serving


def test_a_request_without_a_file_is_told_how_to_send_one(client):
    response = client.post("/api/predict", data={"detect": "true"})
    assert response.status_code == 400 and "field named 'file'" in response.json()["detail"]


@pytest.fixture(scope="module")
def small(trained):
    """A server with small limits and one slot."""
    running = serve.Service(trained / paths.MODEL,
                            limits=serve.Limits(upload_bytes=2**20, pixels=250_000, video_seconds=1.5,
                                                queue=1))
    with TestClient(webapp.build(running)) as test_client:
        yield running, test_client
    running.close()


def test_oversize_uploads_pixels_and_videos_get_413(small, media):
    service, client = small
    big = client.post("/api/predict", files={"file": ("big.jpg", b"\xff\xd8\xff" + b"0" * 2**21)})
    assert big.status_code == 413 and "MiB" in big.json()["detail"]

    def chunked():  # no Content-Length: the cap counts the body as it arrives
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n\r\n"
        for _ in range(40):
            yield b"0" * 2**16
        yield b"\r\n--b--\r\n"
    streamed = client.post("/api/predict", content=chunked(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413
    pixels = post(client, media["face"])  # 512x600 > 250,000 pixels (the video: 640x360 < 250,000)
    assert pixels.status_code == 413 and "too_large" in pixels.json()["detail"]
    video = post(client, media["video"])  # 3 s > 1.5 s
    assert video.status_code == 413 and "too_long" in video.json()["detail"]
    assert post(client, media["no_face"]).status_code == 200  # 320x200: within the limits
    assert list(service.scratch.iterdir()) == []


def test_a_full_queue_answers_503_at_once_and_then_serves_again(small, media):
    service, client = small
    assert service.admit()  # the one slot is taken (as by a request being scored)
    started = time.monotonic()
    busy = client.get("/api/health"), client.post("/api/predict", files={"file": ("a.jpg", b"x")})
    service.release()
    assert busy[0].status_code == 200
    assert busy[1].status_code == 503 and busy[1].headers["retry-after"] == "1"
    assert time.monotonic() - started < 5
    assert client.post("/api/predict", files={"file": ("a.jpg", b"x")}).status_code == 415


def test_the_worker_queue_is_bounded():
    worker, gate = serve.Worker(1), threading.Event()
    running = worker.submit(gate.wait, 30)
    time.sleep(0.2)  # the worker has taken the first job off the queue
    queued = worker.submit(lambda: "second")
    with pytest.raises(Exception) as full:
        worker.submit(lambda: "third")
    assert type(full.value).__name__ == "Full"
    gate.set()
    assert running.result(10) is True and queued.result(10) == "second"
    worker.close()


def test_twenty_concurrent_requests_all_get_their_own_right_answer(client, service, media):
    expected = {name: post(client, media[name]).json() for name in ("face", "no_face")}
    names = ["face", "no_face"] * 10
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda name: post(client, media[name]), names))
    for name, response in zip(names, responses):
        assert response.status_code == 200, response.text
        assert response.json() == expected[name]
    assert list(service.scratch.iterdir()) == []


def test_a_client_file_name_is_only_shown_never_used_as_a_path(client, service, media, tmp_path):
    response = post(client, media["face"], name="../../../../tmp/evil/..\\x<script>.jpg")
    assert response.status_code == 200
    assert {row["file"] for row in response.json()["rows"]} == {"x_script_.jpg"}
    assert not Path("/tmp/evil").exists() and list(service.scratch.iterdir()) == []
    assert serve.display_name("") == "upload" and serve.display_name("..") == "upload"


def test_the_page_is_served_from_memory_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "deepfake-detector" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another site
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")
    for path in ("/web/index.html", "/../serve.py", "/docs", "/static/app.js"):
        assert client.get(path).status_code == 404


def test_on_loopback_only_loopback_host_names_are_answered(service):
    with TestClient(webapp.build(service, list(webapp.LOOPBACK)), base_url="http://127.0.0.1:8000") as local:
        assert local.get("/api/health").status_code == 200
        assert local.get("/api/health", headers={"host": "rebound.example:8000"}).status_code == 400


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_command_has_help_and_a_missing_model_is_one_line(trained):
    code, _, err = run_cli(trained, "serve", "--model", "models/none.keras", "--port", str(free_port()))
    assert code == 2 and err.strip().splitlines() == [
        "error: models/none.keras: no such model file; train one with `dvc repro train`"]
    code, out, _ = run_cli(trained, "serve", "--help")
    assert code == 0 and "--max-video-seconds" in out and "127.0.0.1" in out


def test_explain_on_a_model_without_gradients_is_a_422_naming_why(media, tmp_path):
    """rich_dct counts quantised features (no gradient passes): explain=true is refused in one line,
    not a 500."""
    from deepfake_detector.model import modelfile
    from deepfake_detector.model import builders as models

    modelfile.save(models.build("rich_dct", 256), tmp_path / "rich.keras",
                   modelfile.ModelMeta(model="rich_dct", image_size=256))
    running = serve.Service(tmp_path / "rich.keras", threshold=0.5)
    crop = tmp_path / "crop.png"  # rich_dct scores un-resized 256x256 crops only
    cv2.imwrite(str(crop), cv2.imread(str(media["face"]))[100:356, 140:396])
    with TestClient(webapp.build(running)) as client:
        assert post(client, crop).status_code == 200
        refused = post(client, crop, explain=True)
        resized = post(client, media["face"])  # a photo: its face would be cut and resized, so refused
    running.close()
    assert refused.status_code == 422 and "gradient" in refused.json()["detail"], refused.text
    assert resized.status_code == 422 and "wrong_size" in resized.json()["detail"], resized.text
    assert "un-resized 256x256" in resized.json()["detail"] and "damaged" not in resized.json()["detail"]


@pytest.mark.parametrize("field", ["detect", "explain"])
def test_a_flag_that_is_not_true_or_false_is_a_422_naming_it(client, media, field):
    refused = post(client, media["face"], **{field: "maybe"})
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"{field}: must be true or false (also 1/0, yes/no, on/off), got 'maybe'")
    for word in ("0", "No", "off", "FALSE"):
        assert post(client, media["face"], **{field: word}).status_code == 200


def test_an_upload_from_another_sites_page_is_refused(client, media):
    with open(media["face"], "rb") as handle:
        foreign = client.post("/api/predict", files={"file": ("a.jpg", handle)},
                              headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["detail"]
    with open(media["face"], "rb") as handle:  # the page's own fetch: Origin is this server
        own = client.post("/api/predict", files={"file": ("a.jpg", handle)}, headers={"origin": "http://testserver"})
    assert own.status_code == 200


def test_the_favicon_is_an_inline_svg_the_page_links(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg") and 'rel="icon" href="/favicon.ico"' in client.get("/").text


def test_a_port_in_use_is_one_line_before_serving(trained):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = run_cli(trained, "serve", "--port", str(port))
    assert code == 2 and err.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1: port {port} is in use; pass --port"]


@pytest.mark.parametrize("option", ["--port", "--threshold", "--max-upload-mb", "--max-pixels",
                                    "--max-video-seconds", "--queue", "--read-timeout", "--upload-timeout",
                                    "--fps"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_numeric_option_refuses_non_finite_values(trained, option, value):
    code, _, err = run_cli(trained, "serve", f"{option}={value}")
    assert code == 2 and f"argument {option}: must be" in err and repr(value) in err, err
