"""Who may use the head's web service: whoever proves the cluster token, with
`Authorization: Bearer <token>` (Ray's client, curl, Prometheus) or with the session cookie the
login page sets (a browser). The login page is the only thing served without it; everything
else unauthenticated gets 401 and no data."""

from __future__ import annotations

import hashlib
import hmac
import html
import time

from aiohttp import web

from autoscaler.web.guard import Guard
from runtime.auth import tokens_equal

COOKIE = "rayctl_session"
SESSION_S = 12 * 3600
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


def login_routes(token: str, secure: bool) -> list[web.RouteDef]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE.format(next=html.escape(_next(request.query.get("next"))),
                                                   error=""), content_type="text/html")

    async def submit(request: web.Request) -> web.Response:
        if (request.content_length or 0) > 64 * 1024:
            return web.Response(status=413, text="413: a login form is a few bytes")
        form = await request.post()
        given = str(form.get("token", "")).strip()
        target = _next(str(form.get("next", "/")))
        if not given or not tokens_equal(given, token):
            return web.Response(status=401, content_type="text/html", text=LOGIN_PAGE.format(
                next=html.escape(target), error="That is not this cluster's token."))
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, session_cookie(token, time.time()), max_age=SESSION_S,
                            httponly=True, samesite="Strict", secure=secure, path="/")
        raise response

    return [web.get("/login", page), web.post("/login", submit)]


def _next(value: str | None) -> str:
    """Where to go after logging in: a path on this service only (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value
