"""The HTTP client of the OpenAI-compatible backend: aiohttp behind a small interface.

aiohttp, not httpx: with a few dozen requests in flight httpx's connection pool rescans
every connection for every request (httpcore's ``_assign_requests_to_connections``), which
cost ~5 ms of CPU per request against ~0.4 ms for aiohttp at 64 requests in flight, and
the client runs on the event loop that also drives extraction, the sandbox and the trace.

Failures come out as :class:`HTTPError`: ``dead`` when the server is gone (refused,
dropped or reset connections, a connect timeout), not when it is merely slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as _json
from typing import Any, Mapping, NamedTuple, Optional

import aiohttp
import aiohttp.helpers as aiohttp_helpers
import yarl


class HTTPError(Exception):
    """A request got no answer; ``dead``: the server is gone rather than slow."""

    def __init__(self, message: str, *, dead: bool, kind: str):
        super().__init__(message)
        self.dead = dead
        self.kind = kind  # the failure's name for messages: ConnectError, ReadTimeout, ...

    def __str__(self) -> str:
        text = super().__str__()
        return f"{self.kind}: {text}" if text else self.kind


class Response:
    """A whole answer: status, headers and body, read before the connection went back to the pool."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not."""
        return _json.loads(self.content)


class Client:
    """Keep-alive connections to one or more servers, at most ``max_connections`` open.

    Create it inside the event loop that uses it (aiohttp binds a session to its loop).
    """

    def __init__(self, *, headers: Mapping[str, str], timeout_s: float, connect_timeout_s: float = 10.0, max_connections: int = 0):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._connect_timeout_s = connect_timeout_s
        self._session = aiohttp.ClientSession(
            headers=dict(headers),
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(limit=max_connections),
            # The environment (HTTP(S)_PROXY, NO_PROXY, ~/.netrc) applies as for other HTTP
            # clients, but is read once per server (_environment), not by aiohttp's
            # trust_env: that reads ~/.netrc and the proxy variables in two worker threads
            # for every request, which cost the event loop more CPU than the request itself.
            trust_env=False,
        )
        self._own_authorization = any(k.lower() == "authorization" for k in headers)
        self._environments: dict[tuple[str, str, Optional[int]], _Environment] = {}

    async def _environment(self, url: str) -> "_Environment":
        """The proxy and netrc credentials the environment gives ``url``'s server, looked up once."""
        try:
            u = yarl.URL(url)
        except (ValueError, TypeError):
            return _NO_ENVIRONMENT  # aiohttp itself reports the bad URL
        if not u.host:
            return _NO_ENVIRONMENT
        key = (u.scheme, u.host, u.port)
        env = self._environments.get(key)
        if env is None:
            env = await asyncio.to_thread(_read_environment, u, not self._own_authorization)
            self._environments[key] = env
        return env

    async def get(self, url: str, *, timeout: Optional[float] = None) -> Response:
        return await self._request("GET", url, None, timeout)

    async def post(self, url: str, *, json: Any, timeout: Optional[float] = None) -> Response:
        return await self._request("POST", url, json, timeout)

    async def _request(self, method: str, url: str, body: Any, timeout: Optional[float]) -> Response:
        t = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout, connect=min(timeout, self._connect_timeout_s))
        try:
            env = await self._environment(url)
            async with self._session.request(method, url, json=body, timeout=t, proxy=env.proxy, proxy_auth=env.proxy_auth,
                                             auth=env.auth) as resp:
                content = await resp.read()
                return Response(resp.status, resp.headers, content)
        except aiohttp.ConnectionTimeoutError as exc:
            raise HTTPError(str(exc), dead=True, kind="ConnectTimeout") from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise HTTPError(str(exc) or f"no answer within {t.total:g} s", dead=False, kind="ReadTimeout") from exc
        except aiohttp.ClientConnectorError as exc:
            raise HTTPError(str(exc), dead=True, kind="ConnectError") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise HTTPError(str(exc), dead=True, kind="RemoteProtocolError") from exc
        except (aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise HTTPError(str(exc), dead=True, kind="ReadError") from exc
        except aiohttp.InvalidURL as exc:
            raise HTTPError(f"not a URL: {exc}", dead=False, kind="InvalidURL") from exc
        except aiohttp.ClientError as exc:
            raise HTTPError(str(exc), dead=False, kind=type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Environment(NamedTuple):
    proxy: Optional[yarl.URL] = None
    proxy_auth: Optional[aiohttp.BasicAuth] = None
    auth: Optional[aiohttp.BasicAuth] = None


_NO_ENVIRONMENT = _Environment()


def _read_environment(url: yarl.URL, netrc_auth: bool) -> _Environment:
    """What aiohttp's ``trust_env`` would use for ``url``: a proxy unless NO_PROXY bypasses it,
    and (with no Authorization header of our own) the ~/.netrc entry of its host."""
    proxy = proxy_auth = auth = None
    with contextlib.suppress(LookupError):
        proxy, proxy_auth = aiohttp_helpers.get_env_proxy_for_url(url)
    if netrc_auth and url.host:
        with contextlib.suppress(LookupError):
            auth = aiohttp_helpers.basicauth_from_netrc(aiohttp_helpers.netrc_from_env(), url.host)
    return _Environment(proxy, proxy_auth, auth)


def version() -> str:
    return aiohttp.__version__
