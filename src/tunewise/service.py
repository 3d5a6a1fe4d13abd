"""``tunewise serve``: the classifier as an HTTP service (FastAPI on Uvicorn).

Endpoints: ``POST /v1/classify`` (one or many texts -> label, class probabilities, fraud
score, flag) — for an image model ``POST /v1/classify-image`` (the image's bytes as the
body) — ``GET /healthz``, ``GET /v1/model`` (labels, versions, recipe, threshold,
limits), the OpenAPI schema at ``/openapi.json`` with docs at ``/docs`` and ``/redoc``
(served from local files, so they work offline), and the web page at ``/`` (paste
messages, or drop an image). Every request is bounded — body bytes, texts per request,
characters per text, decoded pixels — and anything malformed is a 4xx with a message that
says what was wrong, never a 500.
The server binds to 127.0.0.1 unless told otherwise; an API key is optional.
"""

from __future__ import annotations

import re
import secrets
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunewise import __version__
from tunewise.batching import MicroBatcher
from tunewise.data.encoding import CONTROL_CHARS
from tunewise.inference import Predictor


@dataclass(frozen=True)
class Limits:
    """What one request may contain."""

    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_chars: int = 5_000
    # occlusion scores one variant per character: bound its cost separately
    max_explain_texts: int = 16


class ClassifyRequest(BaseModel):
    """``{"text": "..."}`` or ``{"texts": ["...", ...]}``."""

    model_config = ConfigDict(
        extra="forbid",
        # documents "exactly one of" in the schema, so clients and fuzzers know it
        json_schema_extra={"oneOf": [{"required": ["text"]}, {"required": ["texts"]}]},
    )

    text: str | None = Field(None, description="One message.")
    texts: list[str] | None = Field(None, description="Several messages.")
    explain: bool = Field(False, description="Add per-character attributions (occlusion).")

    @model_validator(mode="after")
    def _one_of(self) -> ClassifyRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


# a text with something in it once whitespace and control characters are set aside
_NOT_BLANK = "[^\\s\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]"


def _request_model(limits: Limits) -> type[ClassifyRequest]:
    """``ClassifyRequest`` with this server's limits written into its JSON schema. The limits
    are enforced by the route (413 for a limit, 422 for an empty text, with a message); the
    schema only tells clients where they are."""
    text = {"type": "string", "maxLength": limits.max_chars, "pattern": _NOT_BLANK}
    texts = {"type": "array", "items": text, "minItems": 1, "maxItems": limits.max_texts}
    explained = {"properties": {"texts": {"maxItems": limits.max_explain_texts}}}

    def extra(schema: dict) -> None:
        schema["properties"]["text"] = {**text, "description": "One message."}
        schema["properties"]["texts"] = {**texts, "description": "Several messages."}
        schema["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]
        schema["if"] = {"properties": {"explain": {"const": True}}, "required": ["explain"]}
        schema["then"] = explained

    class Request(ClassifyRequest):
        model_config = ConfigDict(title="ClassifyRequest", json_schema_extra=extra)

    return Request


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413 as soon as the limit
    is crossed, whether or not the client sent Content-Length (chunked uploads too). Bodies
    within the limit are read here and handed on unchanged."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: wait for the client to go away

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        body = f'{{"detail": "request body over {self.limit:,} bytes"}}'.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ErrorBody(BaseModel):
    """Every 4xx: ``detail`` says what was wrong (a message, or FastAPI's list of field errors)."""

    detail: str | list[dict]


def _errors(*codes: int) -> dict:
    """The error responses of a route, for the OpenAPI schema (clients and fuzzers read it)."""
    described = {
        400: "The body could not be parsed at all (nested too deeply, say).",
        401: "Missing or wrong API key (only when the server was started with one).",
        413: "Over a limit: body bytes, texts per request or characters per text (see /v1/model).",
        422: "Malformed: not JSON, wrong fields or types, an empty text.",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in codes}


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _letters(text: str) -> list[str]:
    return [c for c in text if c.isalpha()]


def model_script_is_chinese(predictor: Predictor) -> bool:
    """Whether the model reads Chinese: most of its vocabulary's one-character tokens are
    Chinese characters (the bundled encoder, a TextCNN trained on Chinese SMS)."""
    vocab = predictor.tokenizer.get_vocab()
    singles = [t for t in vocab if len(t) == 1 and t.isalpha()]
    return bool(singles) and sum(bool(_CJK.match(t)) for t in singles) > len(singles) / 2


def script_warning(text: str, chinese_model: bool) -> str | None:
    """A note for a message in a script the model never learned: letters, but under a fifth of
    them Chinese, into a Chinese model (English, say). Its scores mean little.

    Example:
        >>> script_warning("Your parcel is waiting, click the link", chinese_model=True)[:36]
        'This model was trained on Chinese te'
        >>> script_warning("您的快递 is waiting", chinese_model=True) is None
        True
    """
    letters = _letters(text)
    if not chinese_model or len(letters) < 4:
        return None
    share = sum(bool(_CJK.match(c)) for c in letters) / len(letters)
    if share >= 0.2:
        return None
    return (
        "This model was trained on Chinese text; this message is mostly in another script "
        f"({100 * share:.0f}% of its letters are Chinese), so its scores are unreliable."
    )


FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
    'fill="#1565c0"/><path d="M9 17l5 5 9-11" stroke="#fff" stroke-width="4" fill="none"/></svg>'
)


def create_app(
    predictor: Predictor,
    *,
    limits: Limits | None = None,
    api_key: str | None = None,
    model_dir: str | Path | None = None,
    max_batch: int = 128,
) -> FastAPI:
    """The FastAPI application around one loaded ``Predictor``.

    Concurrent requests are scored together, up to ``max_batch`` texts per forward pass
    (see :mod:`tunewise.batching`).

    Example:
        >>> app = create_app(Predictor("runs/demo/model"))  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    limits = limits or Limits()
    # one forward pass at a time (the cores are shared anyway), over every request waiting
    batcher = MicroBatcher(predictor, max_batch=max_batch)
    meta = predictor.loaded.meta
    chinese_model = model_script_is_chinese(predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    # FastAPI's own /docs and /redoc load their scripts from a CDN, so they are blank on an
    # intranet or offline host; FastAPIOffline serves the same pages from packaged files
    app = FastAPIOffline(
        lifespan=lifespan,
        title="tunewise",
        version=__version__,
        description="Chinese fraud-SMS classification. POST /v1/classify; the web page is at /.",
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default, with the input echoed back removed: it may be a megabyte
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    check_key = _key_checker(api_key)
    _common_routes(app)
    request_model = _request_model(limits)

    @app.get("/v1/model", dependencies=[Depends(check_key)], responses=_errors(401))
    def model_info() -> dict:
        choice = predictor.threshold_choice
        return {
            "labels": predictor.labels,
            "normal_label": predictor.normal_label,
            "tunewise_version": __version__,
            "model_version": meta.get("tunewise_version"),
            "model": str(model_dir) if model_dir else None,
            "recipe": meta.get("recipe"),
            "architecture": meta.get("architecture"),
            "pretrained": meta.get("pretrained"),
            "backend": predictor.backend,
            "max_length": predictor.window + len(predictor.prefix) + len(predictor.suffix),
            "threshold": predictor.threshold,
            "threshold_choice": asdict(choice) if choice else None,
            "calibration": asdict(predictor.calibration) if predictor.calibration else None,
            "limits": asdict(limits),
            "api_key_required": api_key is not None,
            "batching": {"max_batch": batcher.max_batch, **batcher.stats.as_dict()},
        }

    def classify(body: ClassifyRequest) -> dict:
        texts = body.all_texts()
        if not texts:
            raise HTTPException(422, "'texts' is empty")
        if len(texts) > limits.max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}")
        if body.explain and len(texts) > limits.max_explain_texts:
            raise HTTPException(
                413, f"explain is limited to {limits.max_explain_texts} texts per request, got {len(texts)}"
            )
        for i, text in enumerate(texts):
            if not CONTROL_CHARS.sub("", text).strip():  # NULs and the like are dropped, so count as nothing
                raise HTTPException(422, f"text {i} is empty")
            if len(text) > limits.max_chars:
                raise HTTPException(
                    413, f"text {i} has {len(text):,} characters; the limit is {limits.max_chars:,}"
                )
        if body.explain:
            results, explained = batcher.call(lambda p: (p.predict(texts), [explain(p, t) for t in texts]))
        else:
            results, explained = batcher.predict(texts), None
        out = []
        for i, r in enumerate(results):
            item = r.to_dict()
            if explained is not None:
                item["attribution"] = explained[i]
            warning = script_warning(texts[i], chinese_model)
            if warning:
                item["warning"] = warning
            out.append(item)
        return {"results": out, "threshold": predictor.threshold}

    # registered by hand: the body's model is built above with this server's limits, and a
    # local class is not visible to FastAPI through the (string) annotation
    classify.__annotations__["body"] = request_model
    app.post("/v1/classify", dependencies=[Depends(check_key)], responses=_errors(400, 401, 413, 422))(
        classify
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        from tunewise.webpage import PAGE

        return PAGE

    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    app.state.batcher = batcher
    return app


@dataclass(frozen=True)
class ImageLimits:
    """What one image request may contain: its bytes, and its pixels once decoded (a small
    PNG can decode to gigabytes)."""

    max_body_bytes: int = 10_000_000
    max_pixels: int = 40_000_000


def _common_routes(app: FastAPI) -> None:
    """What every tunewise service answers, whatever it classifies."""

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        # browsers ask for it whatever the page says; an SVG answers (no 404 in every log)
        return Response(FAVICON, media_type="image/svg+xml")


def create_image_app(
    predictor,
    *,
    limits: ImageLimits | None = None,
    api_key: str | None = None,
    model_dir: str | Path | None = None,
) -> FastAPI:
    """The FastAPI application around one loaded ``ImagePredictor``: ``POST /v1/classify-image``
    takes an image file's bytes as the request body (any type Pillow reads; the page sends
    a dropped file as is) and returns its label and class probabilities.

    Example:
        >>> from tunewise.tracks.image import ImagePredictor
        >>> app = create_image_app(ImagePredictor("runs/ants"))  # doctest: +SKIP
    """
    import threading

    from starlette.concurrency import run_in_threadpool

    from tunewise.errors import DataError, ImageTooLarge
    from tunewise.model_dir import read_meta
    from tunewise.tracks.image import open_image

    limits = limits or ImageLimits()
    meta = read_meta(model_dir) if model_dir else {}
    lock = threading.Lock()  # one forward pass at a time: the cores are shared anyway
    app = FastAPIOffline(
        title="tunewise",
        version=__version__,
        description="Image classification. POST an image's bytes to /v1/classify-image; the page is at /.",
    )
    check_key = _key_checker(api_key)
    _common_routes(app)

    @app.get("/v1/model", dependencies=[Depends(check_key)], responses=_errors(401))
    def model_info() -> dict:
        return {
            "track": "image",
            "labels": predictor.labels,
            "tunewise_version": __version__,
            "model_version": meta.get("tunewise_version"),
            "model": str(model_dir) if model_dir else None,
            "recipe": meta.get("recipe"),
            "architecture": meta.get("architecture"),
            "backend": predictor.backend,
            "image_size": predictor.inputs.size,
            "calibration": asdict(predictor.calibration) if predictor.calibration else None,
            "limits": asdict(limits),
            "api_key_required": api_key is not None,
        }

    @app.post(
        "/v1/classify-image",
        dependencies=[Depends(check_key)],
        responses=_errors(401, 413, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def classify_image(request: Request, name: str = "image") -> dict:
        data = await request.body()
        if not data:
            raise HTTPException(422, "the request body is empty: send the image's bytes")

        def work() -> dict:
            try:
                image, _ = open_image(data, name, max_pixels=limits.max_pixels)
            except ImageTooLarge as e:
                raise HTTPException(413, str(e)) from None
            except DataError as e:
                raise HTTPException(422, str(e)) from None
            with lock:
                return predictor.predict([image], names=[name])[0].to_dict()

        # decoding and the forward pass run on a worker thread: the event loop stays free
        # for /healthz and for reading the next uploads
        return {"results": [await run_in_threadpool(work)]}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        from tunewise.webpage import IMAGE_PAGE

        return IMAGE_PAGE

    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    return app


def _key_checker(api_key: str | None):
    """A FastAPI dependency refusing requests without the API key (when one is set)."""

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:]
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send it as X-API-Key)")

    return check_key


def explain(predictor: Predictor, text: str, max_chars: int = 300) -> dict:
    """Occlusion attribution: how much the predicted class's probability drops when each
    character is removed (positive: the character supports the prediction). The score
    explained is the fraud score when the labels have a normal class.

    Example:
        >>> explain(Predictor("runs/demo/model"), "加微信领红包")["chars"][:2]  # doctest: +SKIP
        ['加', '微']
    """
    chars = list(text[:max_chars])
    base = predictor.predict([text])[0]
    if predictor.normal_label is not None:
        target, value = "fraud_score", base.fraud_score or 0.0
    else:
        target, value = base.label, base.probabilities[base.label]
    variants = ["".join(chars[:i] + chars[i + 1 :]) or " " for i in range(len(chars))]
    scored = predictor.predict(variants) if variants else []
    weights = []
    for p in scored:
        after = p.fraud_score if target == "fraud_score" else p.probabilities[target]
        weights.append(round(value - float(after or 0.0), 6))
    return {
        "target": target,
        "value": value,
        "chars": chars,
        "weights": weights,
        "truncated": len(text) > max_chars,
    }
