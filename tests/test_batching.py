"""Cross-request batching: concurrent requests share forward passes and get their own results."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tunewise.batching import MicroBatcher
from tunewise.inference import Predictor
from tunewise.service import create_app

from .conftest import LiveServer

TEXTS = [
    "您的验证码是482913，五分钟内有效",
    "我是公安局民警，你的账户涉嫌洗钱，请配合调查",
    "无抵押低息贷款，加微信当天放款",
    "快递已到小区驿站，请凭取件码取件",
    "恭喜您获得二等奖，请点击链接领取",
    "明天下午三点开会，记得带材料",
    "您的信用卡额度可提升至五万，回复Y办理",
    "本月话费账单已出，共计58元",
]


@pytest.fixture(scope="module")
def predictor(scratch_model) -> Predictor:
    return Predictor(scratch_model[1])


def test_waiting_requests_are_scored_in_one_pass(predictor):
    batcher = MicroBatcher(predictor, max_batch=64)
    try:
        # hold the worker so that all eight requests are queued before it looks again
        release, holding = threading.Event(), threading.Event()
        blocker = threading.Thread(target=batcher.call, args=(lambda p: (holding.set(), release.wait(10)),))
        blocker.start()
        assert holding.wait(10)
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(batcher.predict, [t]) for t in TEXTS]
            while batcher._queue.qsize() < len(TEXTS):  # all submitted, none scored yet
                threading.Event().wait(0.01)
            release.set()
            got = [f.result(timeout=30) for f in futures]
        blocker.join()
        assert batcher.stats.batches == 1 and batcher.stats.requests == 8
        assert batcher.stats.largest_batch == 8
        expected = predictor.predict(TEXTS)
        for (g,), e in zip(got, expected, strict=True):  # each caller gets its own text's result
            assert g.text == e.text and g.label == e.label
            assert g.probabilities == pytest.approx(e.probabilities, abs=1e-5)
    finally:
        batcher.close()


def test_max_batch_splits_the_queue_and_errors_stay_with_their_request(predictor):
    batcher = MicroBatcher(predictor, max_batch=3)
    try:
        release = threading.Event()
        holding = threading.Event()
        blocker = threading.Thread(target=batcher.call, args=(lambda p: (holding.set(), release.wait(10)),))
        blocker.start()
        assert holding.wait(10)
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(batcher.predict, [t, t]) for t in TEXTS[:4]]
            bad = pool.submit(batcher.call, lambda p: 1 / 0)
            while batcher._queue.qsize() < 5:
                threading.Event().wait(0.01)
            release.set()
            results = [f.result(timeout=30) for f in futures]
            with pytest.raises(ZeroDivisionError):
                bad.result(timeout=30)
        blocker.join()
        assert [len(r) for r in results] == [2, 2, 2, 2]
        assert batcher.stats.largest_batch <= 3 and batcher.stats.batches == 4
        assert batcher.predict(["还能用吗"])[0].text == "还能用吗"  # the worker survived the error
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.predict(["x"])
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(predictor, max_batch=0)


def test_concurrent_http_clients_get_their_own_answers(predictor, scratch_model):
    expected = {p.text: p for p in predictor.predict(TEXTS)}
    with LiveServer(create_app(predictor, model_dir=scratch_model[1])) as base:

        def classify(text: str) -> dict:
            r = httpx.post(f"{base}/v1/classify", json={"text": text}, timeout=60)
            assert r.status_code == 200, r.text
            return r.json()["results"][0]

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(classify, TEXTS * 6))
        for a in answers:
            e = expected[a["text"]]
            assert a["label"] == e.label
            assert a["probabilities"] == pytest.approx(e.probabilities, abs=1e-5)
        stats = httpx.get(f"{base}/v1/model").json()["batching"]
        assert stats["requests"] == 48 and stats["texts"] == 48 and stats["max_batch"] == 128
