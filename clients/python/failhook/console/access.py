"""Who may use the console, and which requests may change anything.

:class:`AccessGuard` is an ASGI middleware in front of every route, static files included:

1. **Access token.** ``failhook console`` prints its URL with a random token (``?token=…``), as
   a notebook server does. A request carrying the right token gets a new session: a random
   session id in an ``HttpOnly``, ``SameSite=Strict`` cookie, and a redirect to the same URL
   without the token (so it leaves the address bar, the history and any ``Referer``). A request
   with neither the token nor a live session's cookie is refused (403).
2. **Anti-forgery token.** Every session has its own random anti-forgery token, which the pages
   put in a hidden ``csrf_token`` field of each form. Every ``POST`` must be a URL-encoded form
   carrying that token, and, when the browser sends an ``Origin``, come from the console's own
   origin; anything else is refused (403) before the route runs. Routes that change nothing
   are ``GET``; other methods are refused (405).
3. **Headers.** Every response forbids framing, scripts and caching (the console serves no
   JavaScript at all; only the stylesheet may be cached) and sends no referrer to other sites.

The guard parses each ``POST`` body itself (URL-encoded only, at most :data:`MAX_FORM_BYTES`)
and hands the fields to the route as :func:`form_of`, so no multipart parser is needed.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode

from starlette.datastructures import URL, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "MAX_FORM_BYTES",
    "AccessGuard",
    "Sessions",
    "csrf_token_of",
    "form_of",
    "new_access_token",
]

COOKIE_NAME = "failhook_console_session"
"""The session cookie's name."""
CSRF_FIELD = "csrf_token"
"""The form field that carries the anti-forgery token."""
TOKEN_PARAMETER = "token"  # noqa: S105 - the parameter's name, not a secret
"""The query parameter that carries the access token."""
MAX_FORM_BYTES = 1024 * 1024
"""The largest ``POST`` body accepted (an edited payload fits; a flood does not)."""
MAX_SESSIONS = 256
"""Sessions kept at once; the oldest is forgotten first."""

_FORM_KEY = "failhook.console.form"
_CSRF_KEY = "failhook.console.csrf"
_FORM_TYPE = "application/x-www-form-urlencoded"

SECURITY_HEADERS: Mapping[str, str] = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on our own forms.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
"""Sent with every response."""
STATIC_PREFIX = "/static/"
"""Where the console's stylesheet is served from."""
STATIC_CACHE_CONTROL = "private, max-age=3600"
"""What static files send instead of ``no-store``."""


def new_access_token() -> str:
    """Return a fresh random access token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class Sessions:
    """The live sessions: session id to its anti-forgery token, oldest first.

    Args:
        limit: The most sessions kept; a new one beyond it forgets the oldest.
    """

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def open(self) -> str:
        """Start a session and return its id."""
        session_id = secrets.token_urlsafe(32)
        self._tokens[session_id] = secrets.token_urlsafe(32)
        while len(self._tokens) > self._limit:
            self._tokens.popitem(last=False)
        return session_id

    def csrf_token(self, session_id: str | None) -> str | None:
        """Return the anti-forgery token of a live session, else ``None``."""
        if not session_id:
            return None
        return self._tokens.get(session_id)


def form_of(request: Request) -> Mapping[str, str]:
    """Return the fields of a ``POST`` form the guard checked (the last value of each field).

    Args:
        request: A ``POST`` request that went through :class:`AccessGuard`.

    Returns:
        The fields by name, without the anti-forgery token.
    """
    fields: Mapping[str, str] = request.scope.get(_FORM_KEY, {})
    return fields


def csrf_token_of(request: Request) -> str:
    """Return the anti-forgery token of the request's session, for the page's forms.

    Args:
        request: A request that went through :class:`AccessGuard`.

    Returns:
        The token.
    """
    token: str = request.scope[_CSRF_KEY]
    return token


def _refusal(status: int, title: str, detail: str) -> Response:
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>failhook console: "
        f"{title}</title></head><body><h1>{title}</h1><p>{detail}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status)


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                return None
            morsel = jar.get(COOKIE_NAME)
            if morsel is not None:
                return morsel.value
    return None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            text: str = value.decode("latin-1")
            return text
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """Read the whole request body; ``None`` if it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class AccessGuard:
    """The ASGI middleware described in the module's docstring.

    Args:
        app: The console's routes.
        access_token: The token printed with the console's URL.
        sessions: The live sessions; a new registry by default.
    """

    def __init__(self, app: ASGIApp, access_token: str, sessions: Sessions | None = None) -> None:
        if len(access_token) < 16:
            raise ValueError("the access token must have at least 16 characters")
        self._app = app
        self._access_token = access_token
        self.sessions = sessions if sessions is not None else Sessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then pass it on or answer it."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        static = scope["path"].startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())
                if static:  # the stylesheet may be kept by the browser; pages never are
                    headers = [(k, v) for k, v in headers if k != b"cache-control"]
                    headers.append((b"cache-control", STATIC_CACHE_CONTROL.encode()))
                message = {**message, "headers": headers}
            await send(message)

        response = await self._check(scope, receive)
        if isinstance(response, Response):
            await response(scope, receive, send_with_headers)
            return
        app_scope, app_receive = response
        await self._app(app_scope, app_receive, send_with_headers)

    async def _check(self, scope: Scope, receive: Receive) -> Response | tuple[Scope, Receive]:
        """Return the refusal or redirect to send, or the scope and receive to pass on."""
        url = URL(scope=scope)
        given = QueryParams(url.query).get(TOKEN_PARAMETER)
        if given is not None and scope["method"] in ("GET", "HEAD"):
            if not hmac.compare_digest(given.encode(), self._access_token.encode()):
                return _refusal(
                    403, "Wrong access token", "Open the URL that <code>failhook console</code> printed."
                )
            return self._open_session(url)
        csrf = self.sessions.csrf_token(_cookie(scope))
        if csrf is None:
            return _refusal(
                403,
                "Access token required",
                "This console needs its access token: open the URL that <code>failhook console</code> "
                "printed (it ends in <code>?token=…</code>).",
            )
        scope = {**scope, _CSRF_KEY: csrf}
        method = scope["method"]
        if method in ("GET", "HEAD"):
            return scope, receive
        if method != "POST":
            return _refusal(405, "Method not allowed", "The console accepts GET and POST only.")
        return await self._check_post(scope, receive, url, csrf)

    async def _check_post(
        self, scope: Scope, receive: Receive, url: URL, csrf: str
    ) -> Response | tuple[Scope, Receive]:
        origin = _header(scope, b"origin")
        if origin is not None and origin != f"{url.scheme}://{url.netloc}":
            return _refusal(403, "Cross-site request refused", "The form was not sent by this console.")
        content_type = (_header(scope, b"content-type") or "").partition(";")[0].strip().lower()
        if content_type != _FORM_TYPE:
            return _refusal(415, "Unsupported form", f"The console accepts {_FORM_TYPE} forms only.")
        body = await _read_body(receive, MAX_FORM_BYTES)
        if body is None:
            return _refusal(413, "Form too large", f"A form may have at most {MAX_FORM_BYTES} bytes.")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return _refusal(400, "Malformed form", "The form is not UTF-8.")
        fields = {name: values[-1] for name, values in parsed.items()}
        sent = fields.pop(CSRF_FIELD, "")
        if not sent or not hmac.compare_digest(sent.encode(), csrf.encode()):
            return _refusal(
                403,
                "Anti-forgery token missing or wrong",
                "Reload the page and submit the form again; forms from other sites are refused.",
            )
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return {**scope, _FORM_KEY: fields}, replay

    def _open_session(self, url: URL) -> Response:
        session_id = self.sessions.open()
        kept = [(k, v) for k, v in QueryParams(url.query).multi_items() if k != TOKEN_PARAMETER]
        target = url.path + (f"?{urlencode(kept)}" if kept else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE_NAME, session_id, httponly=True, samesite="strict", path="/")
        return response
