"""The web page in a real headless Chromium (Debian's, driven by Playwright): load it,
classify, see probability bars and highlighted characters, and prove message text is
never run as HTML."""

from __future__ import annotations

import httpx

from tunewise.inference import Predictor
from tunewise.service import create_app

from .conftest import LiveServer

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">领红包'


def test_page_classifies_highlights_and_escapes(browser, scratch_model, tmp_path):
    app = create_app(Predictor(scratch_model[1]), model_dir=scratch_model[1])
    with LiveServer(app) as url:
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('labels')")
        messages = [
            "我是北京市公安局民警，你的身份证涉嫌洗钱，请转账到安全账户",
            "您的验证码是123456，5分钟内有效",
            HOSTILE,
        ]
        page.fill("#input", "\n".join(messages))
        page.click("#go")
        page.wait_for_selector(".row >> nth=2")
        rows = page.locator(".row")
        assert rows.count() == 3
        labels = [rows.nth(i).locator(".label").inner_text() for i in range(3)]
        assert set(labels) <= {"normal", "police", "loan"}
        # probability bars: one per class, widths adding to ~100%
        widths = page.eval_on_selector_all(
            ".row:first-child .fill", "els => els.map(e => parseFloat(e.style.width))"
        )
        assert len(widths) == 3 and abs(sum(widths) - 100) < 0.5
        # highlighted characters: one span per character, coloured by its attribution
        spans = rows.nth(0).locator(".ch")
        assert spans.count() == len(messages[0])
        # painted exactly where the character moves the score by 0.01 or more (absolute scale;
        # the scale itself is checked on fixed weights below)
        painted = page.eval_on_selector_all(
            ".row:first-child .ch", "els => els.map(e => [parseFloat(e.dataset.weight), e.style.background])"
        )
        assert all((abs(w) >= 0.01) == ("rgba" in c) for w, c in painted), painted
        # the hostile message is shown as text: no script ran, no element was created from it
        assert rows.nth(2).locator(".text").inner_text() == HOSTILE
        assert page.locator("#results script, #results img").count() == 0
        assert page.evaluate("window.__pwned") is None and not dialogs
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        page.close()


def test_page_shows_service_errors(browser, scratch_model):
    from tunewise.service import Limits

    app = create_app(Predictor(scratch_model[1]), limits=Limits(max_chars=20))
    with LiveServer(app) as url:
        page = browser.new_page()
        page.goto(f"{url}/")
        page.fill("#input", "这是一条超过二十个字符限制的很长很长很长的短信内容")
        page.click("#go")
        page.wait_for_selector(".error")
        assert (
            "413" in page.locator(".error").inner_text()
            and "limit is 20" in page.locator(".error").inner_text()
        )
        page.close()


def test_api_docs_render_without_internet(browser, scratch_model):
    # FastAPI's default /docs loads Swagger UI from a CDN: blank on an offline host, as here.
    # Every request that leaves the loopback server is refused and recorded.
    app = create_app(Predictor(scratch_model[1]))
    with LiveServer(app) as url:
        page = browser.new_page()
        outside = []

        def only_loopback(route):
            if route.request.url.startswith(url):
                route.continue_()
            else:
                outside.append((route.request.resource_type, route.request.url))
                route.abort()

        page.route("**/*", only_loopback)
        page.goto(f"{url}/docs")
        page.wait_for_selector("#operations-default-classify_v1_classify_post", timeout=15_000)
        assert "tunewise" in page.locator(".info .title").inner_text()
        page.goto(f"{url}/redoc")
        page.wait_for_function("document.body.textContent.includes('/v1/classify')", timeout=15_000)
        assert page.locator(".redoc-wrap").count() == 1
        # the only outside fetch allowed is ReDoc's own "API docs by Redocly" logo image
        assert [kind for kind, _ in outside if kind != "image"] == [], outside
        page.close()


def test_highlights_use_an_absolute_scale_and_the_key_field_shows_only_when_needed(browser, scratch_model):
    predictor = Predictor(scratch_model[1])
    with LiveServer(create_app(predictor)) as url:
        page = browser.new_page()
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('labels')")
        assert page.locator("#keybox").is_hidden()  # this server needs no key
        # a message scored 0.000 whose characters move the score by 1e-5: nothing is painted;
        # one that moves it by 0.3 is full colour, by 0.05 a fifth of it
        colours = page.evaluate(
            """() => Array.from(render({label: "normal", fraud_score: 0.0, probabilities: {normal: 1},
                  attribution: {chars: ["a", "b", "c", "d"], weights: [1e-5, -2e-5, 0.3, -0.05]}})
                  .querySelectorAll(".ch")).map((s) => s.style.background)"""
        )
        assert colours[:2] == ["", ""]
        assert colours[2] == "rgba(198, 40, 40, 0.6)" and colours[3] == "rgba(46, 125, 50, 0.12)"
        # English into a Chinese model is classified, with a warning on the page
        page.fill("#input", "Your parcel is waiting at the depot, click the link to pay the fee")
        page.click("#go")
        page.wait_for_selector(".row .warning")
        assert "trained on Chinese" in page.locator(".row .warning").inner_text()
        assert httpx.get(f"{url}/favicon.ico").headers["content-type"].startswith("image/svg+xml")
        page.close()
    with LiveServer(create_app(predictor, api_key="s3cret")) as url:
        page = browser.new_page()
        page.goto(f"{url}/")
        page.wait_for_selector("#keybox:not([hidden])")  # asked for: the field appears
        page.close()
