"""The service fuzzed: schemathesis generates requests from its own OpenAPI schema (valid and
invalid), against a real Uvicorn server on loopback; hand-made hostile requests (oversize,
deeply nested, malformed); and the web page fed generated texts in a real Chromium."""

from __future__ import annotations

import json
import sys

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tunewise.inference import Predictor
from tunewise.service import Limits, create_app

from .conftest import LiveServer


@pytest.fixture(scope="module")
def base(scratch_model):
    app = create_app(Predictor(scratch_model[1]), model_dir=scratch_model[1], limits=Limits(max_texts=32))
    with LiveServer(app) as url:
        yield url


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_every_operation_holds_to_its_schema(base, mode) -> None:
    """Every default check of schemathesis, on requests generated from the served schema:
    no 5xx, documented status codes and content types, responses matching their schemas,
    and invalid input (the negative mode) refused with a 4xx. (Its pytest plugin does not
    run under pytest 9, so hypothesis drives each operation's strategy here.)"""
    # a request over a limit is refused with 413, which the schema documents; schemathesis's
    # negative check lists the usual 4xx only
    refused = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": refused}}}
    )
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/healthz", "/v1/model", "/v1/classify"}
    for operation in operations:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def holds(case) -> None:
            case.call_and_validate(base_url=base)

        try:
            holds()
        except Unsatisfiable:
            # nothing can be sent wrong to an operation that takes nothing (the GET endpoints)
            assert mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET", operation.path


NESTED = '{"texts": ' + "[" * 5000 + "]" * 5000 + "}"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (NESTED, "application/json", 400),  # 5,000 levels deep: refused, not a RecursionError
        ('{"text": "a"' + ', "x": 1' * 10, "application/json", 422),  # truncated JSON
        (b"\xff\xfe\x00garbage", "application/json", 422),  # not UTF-8
        ('{"text": "' + "诈" * 400_000 + '"}', "application/json", 413),  # over the body limit
        ('{"texts": [' + ",".join(['"好"'] * 33) + "]}", "application/json", 413),  # too many texts
        ('{"text": ["nested", {"a": 1}]}', "application/json", 422),  # wrong type
        ('{"text": "ok"}', "text/plain", 422),  # wrong content type
        ("text=ok", "application/x-www-form-urlencoded", 422),
        ('{"text": "\\u0000\\u0000"}', "application/json", 422),  # only NULs: empty once cleaned
    ],
)
def test_hostile_requests_get_a_4xx(base, body, content_type, status) -> None:
    data = body.encode() if isinstance(body, str) else body
    r = httpx.post(f"{base}/v1/classify", content=data, headers={"content-type": content_type}, timeout=30)
    assert r.status_code == status, r.text[:500]
    assert "detail" in r.json()


hostile_text = st.lists(
    st.sampled_from(
        [
            "<script>window.__pwned=1</script>",
            '<img src=x onerror="window.__pwned=2">',
            "<svg/onload=window.__pwned=3>",
            "javascript:window.__pwned=4",
            '"><iframe srcdoc="<script>parent.__pwned=5</script>">',
            "&lt;b&gt;",
            "{{7*7}}",
            "${window.__pwned=6}",
            "\u202e",
            "领红包",
            "转账",
            "'",
            '"',
            "`",
            "\\",
            "</div>",
        ]
    )
    | st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=6),
    min_size=1,
    max_size=8,
).map("".join)


def test_the_page_stays_xss_safe_under_generated_texts(browser, scratch_model) -> None:
    app = create_app(Predictor(scratch_model[1]), model_dir=scratch_model[1])
    with LiveServer(app) as url:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('labels')")

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            texts=st.lists(hostile_text.filter(lambda t: t.strip() and "\n" not in t), min_size=1, max_size=3)
        )
        def shown_as_text(texts: list[str]) -> None:
            page.evaluate("document.getElementById('results').innerHTML = ''")
            page.fill("#input", "\n".join(texts))
            page.click("#go")
            page.wait_for_selector(f".row >> nth={len(texts) - 1}")
            shown = page.eval_on_selector_all(".row .text", "els => els.map(e => e.textContent)")
            assert [s.strip() for s in shown] == [t.strip() for t in texts]
            assert page.locator("#results script, #results img, #results svg, #results iframe").count() == 0
            assert page.evaluate("window.__pwned") is None and not dialogs

        shown_as_text()
        page.close()


def test_the_schema_documents_the_error_responses(base) -> None:
    spec = httpx.get(f"{base}/openapi.json").json()
    responses = spec["paths"]["/v1/classify"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422"} <= set(responses), json.dumps(responses)[:500]


_OPENED: list[str] = []
_WATCH = {"on": False}


def _audit(event: str, args: tuple) -> None:
    if _WATCH["on"] and event == "open" and isinstance(args[0], str):
        _OPENED.append(args[0])


sys.addaudithook(_audit)  # a hook cannot be removed; it records only while _WATCH is on


def test_paths_in_requests_are_never_opened(base) -> None:
    """Texts and fields that look like paths are data: the server opens no file for them."""
    secret = "/etc/hostname"
    _WATCH["on"] = True
    try:
        for body in (
            {"text": secret},
            {"texts": [secret, "file:///etc/hostname"]},
            {"text": "../../" + secret},
        ):
            assert httpx.post(f"{base}/v1/classify", json=body, timeout=30).status_code == 200
        assert (
            httpx.post(f"{base}/v1/classify", json={"text": "a", "model": secret}, timeout=30).status_code
            == 422
        )
        assert httpx.get(f"{base}/v1/model?path={secret}", timeout=30).status_code == 200
    finally:
        _WATCH["on"] = False
    assert not [p for p in _OPENED if "hostname" in p], _OPENED
