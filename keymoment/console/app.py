"""The console's web app (Starlette): one page, its panels as JSON, its own static files.

Security, because the page shows customer tokens:
- every path but `/healthz` asks for the credential: HTTP Basic (any user
  name, the token as password), `Authorization: Bearer TOKEN`, or the
  session cookie that `/?token=TOKEN` sets (then redirects without it);
- every answer carries a Content-Security-Policy that allows nothing but
  this console's own scripts, styles and fetches, and no framing;
- only GET and HEAD exist: nothing on the page changes anything.
The token comes from an environment variable (`commands/console.py`), never
from the command line.
"""

from __future__ import annotations

import base64
import hmac
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .page import page
from .view import Console

COOKIE = "keymoment_console"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {"console.js": "text/javascript", "console.css": "text/css", "icon.svg": "image/svg+xml"}


def _asset(name: str) -> bytes:
    return (resources.files("keymoment.console") / "static" / name).read_bytes()


def authorized(request: Request, token: str) -> bool:
    """Basic (password = token), Bearer, or the session cookie; compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    offered = ""
    if scheme.lower() == "bearer":
        offered = value.strip()
    elif scheme.lower() == "basic":
        try:
            offered = base64.b64decode(value.strip()).decode().partition(":")[2]
        except ValueError:
            offered = ""
    offered = offered or request.cookies.get(COOKIE, "")
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


class Guard:
    """ASGI middleware: the security headers on every answer, the credential on every path."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().title() not in HEADERS
                ]
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = headers
            await send(message)

        request = Request(scope)
        if scope["path"] != "/healthz" and not self._let_in(request):
            response: Response = _login(request, self.token)
            await response(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)

    def _let_in(self, request: Request) -> bool:
        return authorized(request, self.token)


def _login(request: Request, token: str) -> Response:
    """`/?token=` with the right token sets the cookie; anything else is a 401 challenge."""
    given = request.query_params.get("token", "")
    if given and hmac.compare_digest(given.encode(), token.encode()):
        rest = {k: v for k, v in request.query_params.items() if k != "token"}
        target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response
    return Response(
        "credential required\n",
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="keymoment console", charset="UTF-8"'},
        media_type="text/plain",
    )


def build_app(console: Console, token: str) -> ASGIApp:
    """The app for uvicorn; `token` must be non-empty (the command sees to it)."""
    if not token:
        raise ValueError("the console needs a credential")
    assets = {name: _asset(name) for name in STATIC}
    # Plain (not async) endpoints: Starlette runs them in its thread pool, so building the
    # panels never holds up the event loop that answers the other requests.

    def filters(request: Request) -> dict[str, str]:
        q = request.query_params
        return {k: q.get(k, "")[:200] for k in ("rule", "outcome", "customer")}

    def index(request: Request) -> HTMLResponse:
        f = filters(request)
        return HTMLResponse(page(console, console.panels(**f), **f))

    def panels(request: Request) -> JSONResponse:
        return JSONResponse(console.panels(**filters(request)))

    def status(request: Request) -> JSONResponse:
        return JSONResponse(console.status())

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return Response(assets[name], media_type=STATIC[name])

    def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    routes: list[Any] = [
        Route("/", index),
        Route("/panels", panels),
        Route("/status", status),
        Route("/healthz", healthz),
        Route("/static/{name}", static),
    ]
    return Guard(Starlette(routes=routes), token)
