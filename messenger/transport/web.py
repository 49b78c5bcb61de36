"""The web client: the built files (`web/` bundled into `messenger/web/`) served at `/`,
`/static/` and `/sw.js`. The build needs Node.js, the server does not: without a build, `/`
says how to make one and everything else works as before."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
BUILD_HINT = (
    "The messenger's web client is not built.\n"
    "Build it once with Node.js (only needed for building):\n\n"
    "    cd web && npm ci && npm run build\n\n"
    "then restart the server. The HTTP API (/api/v1) and Socket.IO (/socket.io) work "
    "without it.\n"
)
# The page loads only its own script and style and talks only to its own origin: a
# message body that slipped into HTML could still not run or load anything.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def add_web_routes(app: web.Application, directory: Path = WEB_DIR) -> None:
    """`GET /` and `/static/{name}` from `directory` if it holds a build, else a hint
    at `/`. Only the files the build made are served, listed once at start-up. The
    service worker is also at `/sw.js`: a worker controls at most the directory it is
    served from, and the notifications' worker needs scope `/`."""
    index = directory / "index.html"
    if not index.is_file():

        async def hint(_request: web.Request) -> web.Response:
            return web.Response(text=BUILD_HINT, content_type="text/plain")

        app.router.add_get("/", hint)
        return

    files = {path.name: path for path in directory.iterdir() if path.is_file()}
    # Revalidated on each load (ETag / Last-Modified make that cheap): a new build shows
    # at once; the page names its script and style with a content hash as well.
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers=headers)

    async def static(request: web.Request) -> web.FileResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=headers)

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    worker = files.get("sw.js")
    if worker is not None:

        async def service_worker(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(worker, headers=headers)

        app.router.add_get("/sw.js", service_worker)
