"""The API over HTTP: requests, the error body, pagination and the resource list of
``GET /api/v1/``. Everything the CLI knows of the service comes through here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

API_ROOT = "/api/v1/"
USER_AGENT = "factoryctl/0.1"
PAGE_MAX = 1000  # the API's largest page (factory.core.pagination)

Params = Sequence[tuple[str, Any]] | Mapping[str, Any] | None


@dataclass
class ApiError(Exception):
    """The API refused: its error body (``{"status","code","message","errors"}``) as sent, or
    what can be said of an answer without one (a proxy's 502 page, say)."""

    status: int
    code: str
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    retry_after: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        retry_after = response.headers.get("Retry-After")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            errors = body.get("errors")
            return cls(
                int(body.get("status") or response.status_code),
                body["code"],
                str(body.get("message") or response.reason),
                [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else [],
                retry_after,
            )
        text = " ".join(response.text.split())[:200] if response.text else ""
        message = response.reason or "error"
        return cls(
            response.status_code,
            "http_error",
            f"{message} ({text})" if text else message,
            [],
            retry_after,
        )


class Unreachable(Exception):
    """No answer from the server at all: refused, timed out, a bad address."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url, self.reason = url, reason


def normalize_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/api/v1/`` are the
    same server."""
    url = url.strip().rstrip("/")
    if url.endswith(API_ROOT.rstrip("/")):
        url = url[: -len(API_ROOT.rstrip("/"))]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000")
    return url


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "No route to host"):
        if hint in text:
            return hint.lower()
    return text.split(": ", 1)[-1][:200] if text else type(exc).__name__


class Client:
    def __init__(self, base_url: str, token: str = "", timeout: float = 30.0) -> None:
        self.base_url = normalize_url(base_url)
        self.token = token
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self._endpoints: dict[str, str] | None = None

    def url(self, path: str) -> str:
        """An absolute URL on our server: for an API path (``sites/``, ``/api/v1/sites/``), or
        the path and query of a URL the API gave (its host may be how a proxy saw it)."""
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        elif not path.startswith("/"):
            path = API_ROOT + path
        return self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
    ) -> requests.Response:
        """The answer, if it is a 2xx; ApiError if the API refused, Unreachable if nothing
        answered."""
        url = self.url(path)
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=body,
                headers=dict(headers or {}),
                stream=stream,
                timeout=timeout or self.timeout,
            )
        except requests.RequestException as exc:
            raise Unreachable(self.base_url, _reason(exc)) from None
        if response.status_code >= 400:
            try:
                raise ApiError.from_response(response)
            finally:
                response.close()
        return response

    def get(self, path: str, params: Params = None) -> Any:
        return _json(self.request("GET", path, params=params))

    def post(self, path: str, body: object = None, headers: Mapping[str, str] | None = None) -> Any:
        return _json(self.request("POST", path, body=body, headers=headers))

    def delete(self, path: str) -> None:
        self.request("DELETE", path).close()

    def items(
        self, path: str, params: Params = None, *, limit: int | None = 50
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to ``limit`` items of a list (None: all of them, page by page), and how many the
        API says there are (None if it does not say)."""
        query = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        page = PAGE_MAX if limit is None else max(1, min(limit, PAGE_MAX))
        if not any(k == "limit" for k, _ in query):
            query.append(("limit", page))
        found: list[dict[str, Any]] = []
        count: int | None = None
        next_url: str | None = path
        first = True
        while next_url and (limit is None or len(found) < limit):
            body = self.get(next_url, query if first else None)
            first = False
            if isinstance(body, list):  # an unpaginated list
                found += body
                count = len(body)
                break
            if not isinstance(body, dict) or "results" not in body:
                raise ApiError(0, "unexpected_answer", f"{path} answered no list")
            found += body["results"]
            count = body.get("count", count)
            next_url = body.get("next")
        return (found if limit is None else found[:limit]), count

    def endpoints(self) -> dict[str, str]:
        """``{name: path}`` of every collection endpoint, as ``GET /api/v1/`` lists them."""
        if self._endpoints is None:
            body = self.get(API_ROOT)
            listed = body.get("endpoints", {}) if isinstance(body, dict) else {}
            self._endpoints = {name: urlsplit(url).path for name, url in listed.items()}
        return self._endpoints


def _json(response: requests.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            response.status_code, "unexpected_answer", f"{response.url} answered no JSON"
        ) from None


def chunks(response: requests.Response, size: int = 65536) -> Iterator[bytes]:
    """A streamed body as its bytes arrive (an event must not wait for a buffer to fill)."""
    read1 = getattr(response.raw, "read1", None)
    try:
        if read1 is None:
            yield from response.iter_content(chunk_size=1)
            return
        while True:
            chunk = read1(size)
            if not chunk:
                return
            yield chunk
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        reason = _reason(exc) if isinstance(exc, requests.RequestException) else str(exc)
        raise Unreachable(response.url, reason or type(exc).__name__) from None
