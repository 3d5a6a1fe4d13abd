"""`tunewise serve`: a real Uvicorn server on loopback, a real HTTP client, every bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tunewise.inference import Predictor
from tunewise.service import Limits, create_app

from .conftest import LiveServer, free_port

LIMITS = Limits(max_body_bytes=20_000, max_texts=8, max_chars=300, max_explain_texts=4)


@pytest.fixture(scope="module")
def predictor(scratch_model) -> Predictor:
    return Predictor(scratch_model[1])


@pytest.fixture(scope="module")
def base(predictor, scratch_model) -> Iterator[str]:
    with LiveServer(create_app(predictor, limits=LIMITS, model_dir=scratch_model[1])) as url:
        yield url


def test_health_model_info_and_page(base, predictor):
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    info = httpx.get(f"{base}/v1/model").json()
    assert info["labels"] == predictor.labels and info["normal_label"] == "normal"
    assert info["recipe"] == "scratch" and info["backend"] == "torch"
    assert info["limits"] == {
        "max_body_bytes": 20_000,
        "max_texts": 8,
        "max_chars": 300,
        "max_explain_texts": 4,
    }
    assert "threshold" in info
    schema = httpx.get(f"{base}/openapi.json").json()
    assert "/v1/classify" in schema["paths"]
    page = httpx.get(f"{base}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text and "http://" not in page.text  # nothing fetched from elsewhere


def test_classify_one_and_many_matches_the_library(base, predictor):
    one = httpx.post(f"{base}/v1/classify", json={"text": "我是公安局民警，你的账户涉嫌洗钱"}).json()
    (r,) = one["results"]
    direct = predictor.predict(["我是公安局民警，你的账户涉嫌洗钱"])[0]
    assert r["label"] == direct.label and r["probabilities"] == pytest.approx(direct.probabilities)
    assert r["fraud_score"] == pytest.approx(1 - r["probabilities"]["normal"])
    texts = ["您的验证码是123456", "无抵押贷款，加微信办理", "<script>alert(1)</script>"]
    many = httpx.post(f"{base}/v1/classify", json={"texts": texts, "explain": True}).json()["results"]
    assert [m["text"] for m in many] == texts
    for m in many:
        a = m["attribution"]
        assert a["chars"] == list(m["text"]) and len(a["weights"]) == len(m["text"])
        # scored alone vs in a padded batch of three: equal up to float noise
        assert a["target"] == "fraud_score" and a["value"] == pytest.approx(m["fraud_score"], abs=1e-6)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"json": {}}, 422, "exactly one of"),
        ({"json": {"text": "a", "texts": ["b"]}}, 422, "exactly one of"),
        ({"json": {"texts": "not a list"}}, 422, "list"),
        ({"json": {"texts": [1, 2]}}, 422, "string"),
        ({"json": {"texts": []}}, 422, "empty"),
        ({"json": {"texts": ["ok", "   "]}}, 422, "text 1 is empty"),
        ({"json": {"text": "x", "extra": 1}}, 422, "Extra inputs"),
        ({"json": {"texts": ["短信"] * 9}}, 413, "limit is 8"),
        ({"json": {"texts": ["短信"] * 5, "explain": True}}, 413, "explain is limited to 4"),
        ({"json": {"text": "长" * 301}}, 413, "limit is 300"),
        ({"json": {"text": "x" * 30_000}}, 413, "over 20,000 bytes"),
        ({"json": ["a", "list"]}, 422, ""),
    ],
)
def test_malformed_or_oversized_requests_get_a_clear_4xx(base, request_kwargs, status, message):
    r = httpx.post(f"{base}/v1/classify", **request_kwargs)
    assert r.status_code == status, r.text
    assert message in r.text
    assert len(r.content) < 5_000  # errors do not echo megabytes back


def test_a_chunked_body_without_length_is_bounded_too(base):
    def chunks():
        for _ in range(40):
            yield b'{"text": "' + b"x" * 1000

    r = httpx.post(f"{base}/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert httpx.get(f"{base}/v1/classify").status_code == 405


def test_api_key(predictor):
    app = create_app(predictor, limits=LIMITS, api_key="s3cret")
    with LiveServer(app) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200  # health checks need no key
        body = {"text": "您的快递到了"}
        assert httpx.post(f"{url}/v1/classify", json=body).status_code == 401
        assert httpx.post(f"{url}/v1/classify", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.get(f"{url}/v1/model").status_code == 401
        assert httpx.post(f"{url}/v1/classify", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/v1/classify", json=body, headers=bearer).status_code == 200


def test_cli_serve_binds_loopback_by_default(scratch_model):
    port = free_port()
    env = {**os.environ, "TW_KEY": "k"}
    cmd = [sys.executable, "-m", "tunewise", "serve", "--model", str(scratch_model[1]), "--port", str(port)]
    proc = subprocess.Popen(cmd + ["--api-key-env", "TW_KEY"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.time() < deadline, "server did not come up"
                time.sleep(0.2)
        assert r.json() == {"status": "ok"}
        listening = [c for c in _listening(port)]
        assert listening and all(addr.startswith("127.0.0.1") for addr in listening)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/classify", json={"text": "好"}, headers={"X-API-Key": "k"}
        )
        assert r.status_code == 200 and json.loads(r.text)["results"][0]["label"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    missing = subprocess.run(
        cmd + ["--api-key-env", "TW_UNSET_VAR"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "not set" in missing.stderr


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp: state 0A = LISTEN)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                if len(addr) == 8:
                    found.append(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.append("ipv6:" + addr)
    return found
