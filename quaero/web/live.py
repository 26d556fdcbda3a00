"""Conditional GETs for the page's live refresh: an ETag on every JSON read of the API.

The jobs page polls `/api/jobs`, `/api/stats`, a job, its children and its log every
two seconds. Each 200 JSON answer to a GET under `/api/` gets a strong ETag (a hash of
the body) and `Cache-Control: no-cache`; a request whose `If-None-Match` names the
current ETag gets `304 Not Modified` with no body, so an idle page costs the browser
nothing to parse or redraw. Hooked into the app by `pages.bp`, so it needs no line in
`create_app`.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

bp = Blueprint("live", __name__)


@bp.after_app_request
def conditional_get(response: Response) -> Response:
    """Tag JSON reads of the API and answer 304 when the client already has them."""
    if (
        request.method != "GET"
        or not request.path.startswith("/api/")
        or response.status_code != 200
        or response.mimetype != "application/json"
        or response.direct_passthrough
    ):
        return response
    if "ETag" not in response.headers:
        response.add_etag()
    response.headers.setdefault("Cache-Control", "no-cache")
    return response.make_conditional(request)
