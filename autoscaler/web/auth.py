"""Who may use the head's web service: whoever proves the cluster token, with
`Authorization: Bearer <token>` (Ray's client, curl, Prometheus) or with the session cookie the
login page sets (a browser). The login page is the only thing served without it; everything
else unauthenticated gets 401 and no data."""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import web

from autoscaler.web.guard import Guard
from runtime.auth import tokens_equal

COOKIE = "rayctl_session"
SESSION_S = 12 * 3600
LINK_S = 300  # a one-time login link's life
MAX_LINKS = 1000  # unredeemed links kept at most
PUBLIC_PATHS = frozenset({"/login"})
UNAUTHORIZED = ("401: this is a rayctl cluster's web service; send the cluster token as "
                "`Authorization: Bearer <token>` (the first line of the head's token file), "
                "or log in at /login")


def session_cookie(token: str, now: float) -> str:
    """`<expiry>.<MAC of the expiry under the token>`: nothing to store on the head, void when
    the cluster's token changes."""
    expiry = str(int(now) + SESSION_S)
    return f"{expiry}.{_mac(token, expiry)}"


def valid_cookie(token: str, value: str, now: float) -> bool:
    expiry, _, mac = value.partition(".")
    if not expiry.isdigit() or int(expiry) < now:
        return False
    return hmac.compare_digest(mac, _mac(token, expiry))


def _mac(token: str, expiry: str) -> str:
    return hmac.new(token.encode(), f"rayctl-web-session:{expiry}".encode(),
                    hashlib.sha256).hexdigest()


def bearer_ok(token: str, header: str | None) -> bool:
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and tokens_equal(value.strip(), token)


def middleware(token: str, guard: Guard | None = None) -> web.middleware:  # type: ignore[valid-type]
    """Refuse what lacks the token; tell `guard` (the port's pre-authentication caps) when a
    connection proved it."""
    @web.middleware
    async def check(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:  # type: ignore[valid-type]
        if request.path in PUBLIC_PATHS:
            return await handler(request)  # type: ignore[operator]
        if bearer_ok(token, request.headers.get("Authorization")) or valid_cookie(
                token, request.cookies.get(COOKIE, ""), time.time()):
            if guard is not None:
                guard.authenticated(request.transport)
            return await handler(request)  # type: ignore[operator]
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            # a person's browser: the login page, then back here (a redirect carries no data)
            raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
        return web.Response(status=401, text=UNAUTHORIZED,
                            headers={"WWW-Authenticate": 'Bearer realm="rayctl"'})

    return check


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rayctl: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 28rem; margin: 10vh auto; padding: 0 1rem; }}
input {{ width: 100%; padding: .5rem; margin: .5rem 0; box-sizing: border-box; }}
button {{ padding: .5rem 1.5rem; }} .error {{ color: #b00020; }}
</style></head><body>
<h1>rayctl</h1>
<p>Paste the cluster token: the first line of the head's token file
(<code>rayctl start</code> prints where it is).</p>
<form method="post" action="/login">
<input type="password" name="token" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button></form>
<p class="error">{error}</p>
</body></html>"""


class LoginLinks:
    """One-time login links (`rayctl dashboard` prints one): a random code that logs a browser in
    once, within LINK_S. Kept in the web service's memory: a restart voids them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._codes: dict[str, float] = {}  # code -> expiry

    def issue(self) -> str:
        now = self.clock()
        self._codes = {c: t for c, t in self._codes.items() if t >= now}
        while len(self._codes) >= MAX_LINKS:  # the oldest goes first
            del self._codes[min(self._codes, key=self._codes.__getitem__)]
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + LINK_S
        return code

    def redeem(self, code: str) -> bool:
        expiry = self._codes.pop(code, None)
        return expiry is not None and expiry >= self.clock()


def login_routes(token: str, secure: bool, links: LoginLinks | None = None) -> list[web.RouteDef]:
    links = links or LoginLinks()

    def logged_in(target: str) -> web.HTTPSeeOther:
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, session_cookie(token, time.time()), max_age=SESSION_S,
                            httponly=True, samesite="Lax", secure=secure, path="/")
        return response

    async def page(request: web.Request) -> web.Response:
        target = _next(request.query.get("next"))
        code = request.query.get("code")
        if code is not None:
            if links.redeem(code):
                raise logged_in(target)
            return web.Response(status=401, content_type="text/html", text=LOGIN_PAGE.format(
                next=html.escape(target), error="That login link was used already or has "
                "expired: run `rayctl dashboard` for a new one, or paste the token."))
        return web.Response(text=LOGIN_PAGE.format(next=html.escape(target), error=""),
                            content_type="text/html")

    async def new_link(request: web.Request) -> web.Response:
        """(Behind the token.) A one-time login link's path, for `rayctl dashboard`."""
        query = urlencode({"code": links.issue(), "next": _next(request.query.get("next"))})
        return web.json_response({"path": f"/login?{query}", "expires_in_s": LINK_S})

    async def submit(request: web.Request) -> web.Response:
        if (request.content_length or 0) > 64 * 1024:
            return web.Response(status=413, text="413: a login form is a few bytes")
        form = await request.post()
        given = str(form.get("token", "")).strip()
        target = _next(str(form.get("next", "/")))
        if not given or not tokens_equal(given, token):
            return web.Response(status=401, content_type="text/html", text=LOGIN_PAGE.format(
                next=html.escape(target), error="That is not this cluster's token."))
        raise logged_in(target)

    return [web.get("/login", page), web.post("/login", submit),
            web.post("/api/login-links", new_link)]


def _next(value: str | None) -> str:
    """Where to go after logging in: a path on this service only (never another site)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value
