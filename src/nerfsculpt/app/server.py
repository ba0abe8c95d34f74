"""The local labeling web app: a FastAPI server over a preference database.

Serves one study of a :class:`~nerfsculpt.preferences.store.PreferenceStore` (ranking: best and
worst of 2-6 geometries, or a full ranking; ``ab``: left / right / no preference) with a static
page (``app/static``, no external CDN: works offline). Routes:

- ``GET /``: the page; ``GET /static/{app.js, app.css, favicon.svg}``;
- ``GET /api/state?annotator=NAME[&skip=ID,ID][&question=ID]``: study, the next question (or a
  given open one), the annotator's progress and whether they can undo;
- ``POST /api/answer``: ``{"question_id", "annotator", "best", "worst" | "ranking" | "cant_decide"}``
  with positions (slots) of the question's items; 200 only after the answer is committed to disk;
  re-sending the same answer returns 200 again and stores nothing new;
- ``POST /api/undo``: ``{"annotator"}``: retract their latest answer of the study and return that
  question to be answered again;
- ``GET /images/{item_id}/{view}``: a render of an item from its bank (``front``,
  ``three_quarter``, ``profile``, ``rgb``). Only files of the study's banks are served: the path
  is built from the item's bank and seed, never from the request.

Errors are JSON ``{"detail": message}`` with a 4xx status: 400 bad JSON, 401 missing or wrong
token, 403 request from another site, 404 unknown question or item, 409 conflict (already answered
differently, question finished), 413 body too large, 422 invalid answer. None of them changes the
database.

A token (``X-Nerfsculpt-Token`` header, ``token`` query parameter or cookie) is required when the
app is created with one; ``nerfsculpt label serve`` makes one whenever it binds beyond loopback.
Without a token only loopback ``Host`` names (or the server's own address) are served: no DNS
rebinding. Writes (POST) must be ``application/json`` and, when they carry an ``Origin``, come from
the server's own origin: a page of another site can neither post a form nor a cross-origin
``fetch`` (CSRF).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from nerfsculpt.preferences.store import (
    ConflictError,
    NotFoundError,
    PreferenceError,
    PreferenceStore,
    Question,
    check_name,
)

logger = logging.getLogger(__name__)

UI_VERSION = "nerfsculpt-label-1"
"""Stored with every answer submitted through the page."""
MAX_BODY = 16 * 1024
"""Largest request body accepted (bytes)."""
VIEWS = {"front": "render_front", "three_quarter": "render_three_quarter", "profile": "render_profile",
         "rgb": "rgb"}
"""Image views served, and the bank item each one reads."""
STATIC = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
TOKEN_HEADER = "x-nerfsculpt-token"
TOKEN_COOKIE = "nerfsculpt_token"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
"""``Host`` names served without a token (with any port)."""
SQLITE_INT = range(-2**63, 2**63)
"""Integers SQLite stores (larger ones raise OverflowError): ids outside it name nothing."""


class ApiError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class LabelingService:
    """What the routes do, independent of the web framework (and used by the tests directly)."""

    def __init__(self, db: str | Path, study: str | None = None, ui_version: str = UI_VERSION):
        self.store = PreferenceStore(db, create=False)
        self.study = self.store.choose_study(study)
        info = self.store.study(self.study)
        self.kind = info["kind"]
        self.banks = self._open_banks(info["config"].get("banks", {}))
        self.ui_version = ui_version

    def _open_banks(self, banks: dict[str, str]) -> dict[str, Any]:
        from nerfsculpt.geometry.bank import BankError, open_bank

        opened = {}
        for fingerprint, path in banks.items():
            try:
                opened[fingerprint] = open_bank(path)
            except (BankError, OSError) as error:
                logger.warning("bank %s of study %s cannot be opened (%s); its images will be missing",
                               path, self.study, error)
        return opened

    def close(self) -> None:
        self.store.close()

    # --------------------------------------------------------------------------------------------

    def _question_payload(self, question: Question) -> dict[str, Any]:
        return {"id": question.id, "items": [
            {"slot": slot, "item_id": item_id, "seed": item.seed, "psi": item.psi, "kind": item.kind,
             "views": self._views(item.generator_hash)}
            for slot, (item_id, item) in enumerate(zip(question.item_ids, question.items, strict=True))]}

    def _views(self, fingerprint: str) -> list[str]:
        """Views served for items of a generator: all of them when its bank has renders, else none."""
        bank = self.banks.get(fingerprint)
        return list(VIEWS) if bank is not None and "renders" in bank.manifest["what"] else []

    def state(self, annotator: str, skip: list[int] | None = None, question_id: int | None = None) -> dict[str, Any]:
        _check_annotator(annotator)
        if question_id is not None:
            question = self._own_question(question_id)
            if not self.store.is_open(question_id, annotator):
                raise ApiError(409, f"question {question_id} is not open to {annotator} (answered or finished)")
        else:
            question = self.store.next_question(self.study, annotator, exclude=skip or [])
        last = self.store.last_answer(annotator, self.study)
        return {"study": {"name": self.study, "kind": self.kind},
                "question": None if question is None else self._question_payload(question),
                "progress": self.store.progress(self.study, annotator),
                "can_undo": last is not None}

    def _own_question(self, question_id: Any) -> Question:
        if not isinstance(question_id, int) or isinstance(question_id, bool):
            raise ApiError(422, "question_id must be an integer")
        if question_id not in SQLITE_INT:
            raise ApiError(404, f"no question {question_id}")
        try:
            question = self.store.question(question_id)
        except NotFoundError:
            raise ApiError(404, f"no question {question_id}") from None
        if question.study != self.study:
            raise ApiError(404, f"no question {question_id} in study {self.study!r}")
        return question

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(422, "the answer must be a JSON object")
        unknown = set(body) - {"question_id", "annotator", "best", "worst", "ranking", "cant_decide", "extra"}
        if unknown:
            raise ApiError(422, f"unknown fields {sorted(unknown)}")
        annotator = body.get("annotator")
        _check_annotator(annotator)
        question = self._own_question(body.get("question_id"))
        item_ids = question.item_ids

        def item(slot: Any, name: str) -> int | None:
            if slot is None:
                return None
            if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < len(item_ids):
                raise ApiError(422, f"{name} must be an item position 0-{len(item_ids) - 1} of question "
                                    f"{question.id}, got {slot!r}")
            return item_ids[slot]

        ranking = body.get("ranking")
        if ranking is not None and not isinstance(ranking, list):
            raise ApiError(422, "ranking must be a list of item positions")
        cant_decide = body.get("cant_decide", False)
        if not isinstance(cant_decide, bool):
            raise ApiError(422, "cant_decide must be true or false")
        extra = body.get("extra", {})
        if not isinstance(extra, dict) or len(json.dumps(extra)) > 1024:
            raise ApiError(422, "extra must be a small JSON object")
        try:
            answer, new = self.store.record_answer(
                question.id, annotator, best=item(body.get("best"), "best"), worst=item(body.get("worst"), "worst"),
                ranking=None if ranking is None else [item(s, "ranking entry") for s in ranking],
                cant_decide=cant_decide, ui_version=self.ui_version, extra=extra)
        except ConflictError as error:
            raise ApiError(409, str(error)) from None
        except NotFoundError as error:
            raise ApiError(404, str(error)) from None
        except PreferenceError as error:
            raise ApiError(422, str(error)) from None
        return {"answer_id": answer.id, "new": new, "progress": self.store.progress(self.study, annotator)}

    def undo(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(422, "the request must be a JSON object")
        annotator = body.get("annotator")
        _check_annotator(annotator)
        last = self.store.last_answer(annotator, self.study)
        if last is None:
            raise ApiError(409, f"{annotator} has no answer to undo in study {self.study!r}")
        self.store.undo_answer(last.question_id, annotator)
        return self.state(annotator, question_id=last.question_id)

    def image(self, item_id: int, view: str) -> Path:
        if view not in VIEWS:
            raise ApiError(404, f"unknown view {view!r}; choose from {sorted(VIEWS)}")
        if item_id not in SQLITE_INT:
            raise ApiError(404, f"no item {item_id}")
        try:
            item = self.store.item(item_id, self.study)
        except NotFoundError as error:
            raise ApiError(404, str(error)) from None
        bank = self.banks.get(item.generator_hash)
        if bank is None:
            raise ApiError(404, f"item {item_id} has no bank with renders")
        from nerfsculpt.geometry.bank import BankError

        try:
            return bank.file(item.seed, VIEWS[view])
        except BankError as error:
            raise ApiError(404, str(error)) from None


def _check_annotator(name: Any) -> None:
    try:
        check_name(name, "annotator")
    except PreferenceError as error:
        raise ApiError(422, str(error)) from None


class _Guard:
    """ASGI middleware: host, token, body-size and cross-site checks, before any routing.

    A plain ASGI class rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    costs about a third of a millisecond per request, a sizeable share of an answer's round trip.
    """

    def __init__(self, app, token: str | None, max_body: int):
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_query = query.get("token", [""])[0]
        refusal = self._refusal(scope, headers, from_query)
        if refusal is not None:
            await _json(refusal[0], {"detail": refusal[1]})(scope, receive, send)
            return
        if self.token is None or from_query != self.token:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; Path=/; SameSite=strict"
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", cookie.encode("latin-1"))]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _refusal(self, scope, headers: dict[str, str], from_query: str) -> tuple[int, str] | None:
        """``(status, detail)`` of a request refused before routing, or None."""
        host = headers.get("host", "").lower()
        if self.token is None and not _is_own_host(host, scope.get("server")):
            return 403, (f"Host {host!r} is not this server; open the page at http://127.0.0.1:PORT/ or "
                         f"http://localhost:PORT/ (serve with a token to use other names)")
        if self.token is not None:
            given = headers.get(TOKEN_HEADER) or from_query or _cookie(headers.get("cookie", ""), TOKEN_COOKIE)
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, ("missing or wrong token; open the URL printed by 'nerfsculpt label serve' "
                             "(it carries ?token=...)")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return 413, f"request body larger than {self.max_body} bytes"
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"{scope['scheme']}://{host}":
            return 403, f"cross-origin request from {origin!r} refused; answer on the labeling page itself"
        if headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            return 403, "writes must be sent as application/json (as the labeling page does)"
        return None


def _is_own_host(host: str, server: Any) -> bool:
    """Whether a ``Host`` header names a loopback address or the address the connection came in on.

    ASGI ``server`` is an IP literal under uvicorn: a name an attacker re-points at 127.0.0.1 (DNS
    rebinding) is neither.
    """
    name = _hostname(host)
    return name in LOOPBACK_HOSTS or (bool(server) and name == _hostname(str(server[0])))


def _hostname(host: str) -> str:
    """The name part of a ``Host`` header or server address, without port or IPv6 brackets."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host if host.count(":") > 1 else host.partition(":")[0]


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _json(status: int, payload: Any) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json")


def create_app(db: str | Path, study: str | None = None, token: str | None = None, max_body: int = MAX_BODY):
    """The FastAPI application serving ``study`` of the database ``db``.

    The store is used from one worker thread (the database serialises its work anyway), so the
    event loop keeps parsing requests while an answer is being committed, and no pool of threads
    queues on the store's lock.
    """
    service = LabelingService(db, study)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nerfsculpt-store")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        worker.shutdown(wait=True)
        service.close()

    app = FastAPI(title="nerfsculpt labeling", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.service = service
    app.add_middleware(_Guard, token=token, max_body=max_body)
    static = resources.files("nerfsculpt.app") / "static"

    async def in_worker(function, *args) -> Response:
        result = await asyncio.get_running_loop().run_in_executor(worker, function, *args)
        return _json(200, result)

    async def json_body(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > max_body:
            raise ApiError(413, f"request body larger than {max_body} bytes")
        try:
            return json.loads(raw)
        except ValueError as error:  # also undecodable bytes and integers of more than 4300 digits
            raise ApiError(400, f"the body is not valid JSON ({error})") from None
        except RecursionError:
            raise ApiError(400, "the body is not valid JSON (nested too deeply)") from None

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return _json(error.status, {"detail": error.detail})

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in STATIC:
            raise ApiError(404, f"no static file {name!r}")
        return Response((static / name).read_bytes(), media_type=STATIC[name])

    @app.get("/api/state")
    async def state(annotator: str = "", skip: str = "", question: int | None = None) -> Response:
        try:
            skipped = [int(s) for s in skip.split(",") if s]
            if not all(s in SQLITE_INT for s in skipped):
                raise ValueError
        except ValueError:
            raise ApiError(422, "skip must be comma-separated question ids") from None
        return await in_worker(service.state, annotator, skipped, question)

    @app.post("/api/answer")
    async def answer(request: Request) -> Response:
        return await in_worker(service.answer, await json_body(request))

    @app.post("/api/undo")
    async def undo(request: Request) -> Response:
        return await in_worker(service.undo, await json_body(request))

    @app.get("/images/{item_id}/{view}")
    async def image(item_id: int, view: str) -> FileResponse:
        path = await asyncio.get_running_loop().run_in_executor(worker, service.image, item_id, view)
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    return app
