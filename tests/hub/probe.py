"""Runs inside the hub pod's file system (tests/test_z2jh_hub_config.py): JupyterHub, at the hub image's
versions, initialised from z2jh's own ``/usr/local/etc/jupyterhub/jupyterhub_config.py`` and what the
chart mounted; prints what a login would meet, as JSON.

usage: python probe.py MEMBER OUTSIDER
"""

import asyncio
import json
import sys


async def main(member: str, outsider: str) -> dict:
    from jupyterhub import orm
    from jupyterhub.app import JupyterHub

    app = JupyterHub(config_file="/usr/local/etc/jupyterhub/jupyterhub_config.py")
    await app.initialize([])
    auth = app.authenticator
    handlers = [route for route, *_ in auth.get_handlers(app)]
    users = {u.name: u.admin for u in app.db.query(orm.User)}
    report = {
        "jupyterhub": __import__("jupyterhub").__version__,
        "authenticator": type(auth).__name__,
        "allowed_users": sorted(auth.allowed_users),
        "admin_users": sorted(auth.admin_users),
        "allow_all": auth.allow_all,
        "allow_existing_users": auth.allow_existing_users,
        "handlers": handlers,
        "users": users,
        "member_allowed": bool(await _maybe(auth.check_allowed(member, None))),
        # GitHub's check asks GitHub about organisation membership (no network here)
        "outsider_allowed": None
        if type(auth).__name__ == "GitHubOAuthenticator"
        else bool(
            await _maybe(auth.check_allowed(outsider, {"name": outsider, "admin": False, "auth_state": {}}))
        ),
        "services": sorted(s.name for s in app.db.query(orm.Service)),
        "service_scopes": {
            s.name: sorted(scope for role in s.roles for scope in role.scopes)
            for s in app.db.query(orm.Service)
        },
        "modify_pod_hook": getattr(app.config.KubeSpawner.get("modify_pod_hook"), "__name__", None),
        "server_token_scopes": list(app.config.KubeSpawner.get("server_token_scopes", [])),
    }
    if type(auth).__name__ == "NativeAuthenticator":
        report["signup_pages"] = await _signup_pages(app, outsider)
        # an account made behind the hub's back (as a sign-up would), then a login with it
        auth.create_user(outsider, "a-long-enough-password-1")
        login = await auth.get_authenticated_user(
            None, {"username": outsider, "password": "a-long-enough-password-1"}
        )
        report["outsider_login"] = login
    return report


async def _signup_pages(app, outsider: str) -> dict:
    """The hub's own web application on a local port: what GET and POST /hub/signup answer."""
    import socket

    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = HTTPServer(app.tornado_application)
    server.listen(port, "127.0.0.1")
    client = AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}{app.hub.base_url}"
    try:
        login = await client.fetch(f"{base}login", raise_error=False)
        cookie = "; ".join(c.split(";")[0] for c in login.headers.get_list("Set-Cookie"))
        xsrf = next((c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("_xsrf=")), "")
        get = await client.fetch(f"{base}signup", raise_error=False)
        body = f"username={outsider}&signup_password=a-long-enough-password-1&signup_password_confirmation=a-long-enough-password-1&_xsrf={xsrf}"
        post = await client.fetch(
            f"{base}signup",
            method="POST",
            body=body,
            headers={"Cookie": cookie},
            raise_error=False,
            follow_redirects=False,
        )
        return {"login": login.code, "get": get.code, "post": post.code}
    finally:
        server.stop()


async def _maybe(value):
    return await value if asyncio.iscoroutine(value) else value


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:3]))))
