"""`deepfake-detector serve` as a real process on a loopback port, over real sockets: uploads that
stall or trickle are cut with 408 and free their queue slot, a client that hangs up mid-upload
leaves no traceback in the log, and SIGTERM (systemd, docker) stops it cleanly, scratch folder gone."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from projectcopy import project_env

pytestmark = pytest.mark.slow
COMMAND = str(Path(sys.executable).parent / "deepfake-detector")
BOUNDARY = "test-boundary"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(project: Path, folder: Path, *args: str):
    """`deepfake-detector serve ARGS` with TMPDIR=folder/tmp and stderr in folder/stderr.txt, once it
    answers /api/health: (process, url, the stderr file, the temp folder)."""
    port, tmp, log = free_port(), folder / "tmp", folder / "stderr.txt"
    tmp.mkdir()
    with log.open("w") as err:
        process = subprocess.Popen([COMMAND, "serve", "--port", str(port), *args], cwd=project,
                                   env=project_env(TMPDIR=str(tmp)), stdout=subprocess.DEVNULL, stderr=err)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as answer:
                assert json.load(answer)["status"] == "ok"
            return process, url, log, tmp
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)


def stop(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """The server with 3 slots, 1 s without data cuts an upload, 3 s for a whole one."""
    process, url, log, _ = start(trained, tmp_path_factory.mktemp("serve"),
                                 "--queue", "3", "--read-timeout", "1", "--upload-timeout", "3")
    yield url, log
    stop(process)


def form_head(length: int) -> bytes:
    """A POST /api/predict's headers (announcing ``length`` bytes of body) and its form's first part."""
    part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n").encode() + part


def opened(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=20)


def answer(sock: socket.socket) -> tuple[int, dict]:
    """(status, JSON body), read until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):  # a server that never answers: socket.timeout fails the test
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def upload(url: str, path: Path) -> int:
    body = form_head(0).split(b"\r\n\r\n", 1)[1] + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()
    request = urllib.request.Request(url + "/api/predict", body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status


def test_stalled_uploads_are_cut_with_408_and_their_slots_serve_again(server, media):
    url, _ = server
    stalled = [opened(url) for _ in range(3)]  # as many as --queue: every slot held
    for sock in stalled:
        sock.sendall(form_head(100_000) + b"\xff\xd8\xff" + b"0" * 100)  # ~200 bytes of body, then nothing
    for sock in stalled:
        status, body = answer(sock)  # and the server closes the connection (recv gives b"")
        assert status == 408 and "nothing for 1 s" in body["detail"] and "\n" not in body["detail"]
        sock.close()
    assert upload(url, media["face"]) == 200


def test_an_upload_that_trickles_past_the_deadline_is_cut_with_408(server, media):
    url, _ = server
    sock, done = opened(url), threading.Event()
    sock.sendall(form_head(100_000))

    def trickle():  # a byte every 0.2 s: never idle for the 1 s read timeout
        while not done.wait(0.2):
            try:
                sock.sendall(b"0")
            except OSError:
                return

    feeder = threading.Thread(target=trickle)
    feeder.start()
    try:
        status, body = answer(sock)
    finally:
        done.set()
        feeder.join()
        sock.close()
    assert status == 408 and "longer than 3 s" in body["detail"]
    assert upload(url, media["face"]) == 200


def test_a_client_hanging_up_mid_upload_is_one_line_in_the_log_not_a_traceback(server, media):
    url, log = server
    before = log.read_text().count("hung up")
    for _ in range(3):  # every slot (the earlier tests' requests gave theirs back before answering)
        with opened(url) as sock:
            sock.sendall(form_head(100_000) + b"\xff\xd8\xff" + b"0" * 100)
    deadline = time.monotonic() + 30  # the server sees each hang-up within milliseconds
    while log.read_text().count("hung up") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    err = log.read_text()
    assert err.count("serve: a client hung up during its upload\n") == before + 3, err[-3000:]
    assert "Traceback" not in err and "ClientDisconnect" not in err, err[-3000:]
    assert upload(url, media["face"]) == 200  # the line is written as the slot is given back


def test_sigterm_stops_serve_and_deletes_its_scratch_folder(trained, tmp_path):
    process, _, log, tmp = start(trained, tmp_path)
    # made where TMPDIR says
    assert [p.name for p in tmp.iterdir() if p.name.startswith("deepfake-detector-serve-")]
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("serve did not stop within 30 s of SIGTERM")
    assert process.returncode == 0, log.read_text()[-2000:]
    assert not [p for p in tmp.iterdir() if p.name.startswith("deepfake-detector-serve-")]
    assert "Traceback" not in log.read_text()
