"""Image URLs, fetched without server-side request forgery.

The one place facegate fetches a caller's URL (whichever operation, engine or batch
needs the bytes of a ``{"url": ...}`` image). The rules (ARCHITECTURE.md "Image URLs"):

* https only; plain http only where the stage allows it (``FACEGATE_ALLOW_HTTP_URLS``);
  no ``user:password@``.
* The host is resolved once and every address it resolves to must be public unicast:
  never loopback, private, link-local (169.254.169.254), CGNAT, multicast, reserved,
  unspecified, documentation, unique/site-local, nor an IPv6 form that embeds an IPv4
  address (mapped, compatible; 6to4, Teredo and NAT64 when the embedded one is not
  public). Odd IPv4 spellings (``2130706433``, ``0x7f000001``, ``127.1``) are parsed by
  the resolver, so the check sees what the socket would connect to, never the string.
* The connection goes to the checked address (a pool per address; SNI, ``Host`` and the
  certificate check use the host name, TLS verification always on): a second lookup
  that could rebind the name to an internal address never happens.
* Redirects are followed here, at most ``MAX_REDIRECTS``, each hop checked like the first.
* The body is streamed and capped (``ImageTooLarge``, 413: the caller's image is too big,
  which says nothing about the network). The whole fetch (lookup, connect, TLS, headers,
  body) ends by the request's deadline, and at most ``FETCH_BUDGET_S`` after it starts: a
  watchdog shuts the sockets down, so a server sending a byte now and then cannot hold it.
* Every refusal or failure is the same ``ImageUnavailable`` (422) with the same message;
  the reason is logged at debug level, with the URL stripped of its query string.

``FACEGATE_URL_ALLOWLIST`` (hosts or CIDRs) lifts the address check for local
development only (images served from 127.0.0.1); it never lifts the scheme rule.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import cache
from http.client import HTTPException
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from facegate.errors import ImageTooLarge, ImageUnavailable
from facegate.images import MAX_IMAGE_BYTES

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse, HTTPConnectionPool
    from urllib3.connection import HTTPConnection, HTTPSConnection

FETCH_FAILED = "the image URL could not be fetched"  # the one message of every refusal and failure
MAX_REDIRECTS = 3
FETCH_BUDGET_S = 10.0  # the most one image fetch may take, even when the deadline is further away
CONNECT_TIMEOUT_S = 3.05
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_MAX_POOLS = 8  # pinned pools (one per scheme, address, port and host name) kept for keep-alive

_NOT_PUBLIC = tuple(
    ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1..3)
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/96",  # IPv4-compatible (deprecated), and :: and ::1
        "::ffff:0:0/96",  # IPv4-mapped: the kernel would connect to the embedded IPv4 address
        "64:ff9b:1::/48",  # local-use NAT64
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ip_network("64:ff9b::/96")


def is_public(ip: IPv4Address | IPv6Address) -> bool:
    """Whether facegate may connect to this address on a caller's behalf."""
    if isinstance(ip, IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return ip.is_global and not ip.is_multicast and not any(ip in net for net in _NOT_PUBLIC)


class _Refused(Exception):
    """Why a fetch did not happen or failed: logged at debug level, never shown to the caller."""


@dataclass(frozen=True)
class Allowlist:
    """``FACEGATE_URL_ALLOWLIST``: host names and networks exempt from the address check."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        hosts, networks = set(), []
        for entry in (e.strip().lower() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, ip: IPv4Address | IPv6Address) -> bool:
        return host in self.hosts or any(ip in net for net in self.networks)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # ASCII (IDNA), lower case, IPv6 without brackets
    port: int
    path: str  # path and query, as sent

    @classmethod
    def parse(cls, url: str, *, allow_http: bool) -> _Target:
        if any(ord(c) < 0x21 or 0x7F <= ord(c) <= 0x9F for c in url):
            raise _Refused("control character or space in the URL")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and allow_http):
            raise _Refused(f"scheme {scheme!r} not allowed")
        if "@" in parts.netloc:
            raise _Refused("userinfo in the URL")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise _Refused("no host")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")  # UnicodeError is a ValueError: refused
        port = parts.port or (443 if scheme == "https" else 80)  # a bad port is a ValueError: refused
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        return cls(scheme, host, port, path)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"


def _redacted(url: str) -> str:
    """The URL for a debug log: where it pointed, nothing of what it named. No userinfo,
    path, query or fragment: a path can carry a name or an ID number as well as a query."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return "(unparseable)"


class _Watchdog:
    """Shuts down every socket a fetch uses once its deadline passes, whatever call is blocked on it
    (connect, TLS handshake, headers or body). The sockets are registered by the pools' connections
    through a thread-local, as duplicated descriptors: shutdown acts on the connection, not the descriptor,
    so it also reaches a socket TLS has since wrapped."""

    _current = threading.local()

    def __init__(self, ends: float):
        self.ends = ends
        self.fired = False
        self._dups: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, ends - time.monotonic()), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        _Watchdog._current.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _Watchdog._current.watchdog = None
        with self._lock:
            for dup in self._dups:
                dup.close()
            self._dups.clear()

    @classmethod
    def watch(cls, sock: socket.socket | None) -> None:
        watchdog = getattr(cls._current, "watchdog", None)
        if watchdog is None or sock is None or sock.fileno() < 0:
            return
        dup = socket.socket(sock.family, sock.type, sock.proto, fileno=socket.dup(sock.fileno()))
        with watchdog._lock:
            watchdog._dups.append(dup)
            if watchdog.fired:
                _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for dup in self._dups:
                _shutdown(dup)

    def remaining(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0 or self.fired:
            raise _Refused("deadline passed")
        return left


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


@cache
def _connection_classes() -> tuple[type[HTTPConnection], type[HTTPSConnection]]:
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class Watched(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            _Watchdog.watch(sock)
            return sock

        def request(self, *args: Any, **kwargs: Any) -> None:
            _Watchdog.watch(self.sock)  # a kept-alive connection
            super().request(*args, **kwargs)

    class WatchedHTTP(Watched):
        pass

    class WatchedHTTPS(Watched, HTTPSConnection):
        pass

    return WatchedHTTP, WatchedHTTPS


@cache
def _resolver() -> ThreadPoolExecutor:
    # getaddrinfo cannot be interrupted: it runs here so the fetch can stop waiting at its deadline.
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="facegate-resolve")


class UrlFetcher:
    """Fetches image URLs under the rules above. One per container: its pinned pools keep
    connections alive across warm invocations. ``ca_certs`` is for tests (certifi otherwise)."""

    def __init__(self, ca_certs: str | None = None):
        self.ca_certs = ca_certs
        self._pools: OrderedDict[tuple[str, str, int, str], HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def fetch(
        self,
        url: str,
        *,
        allow_http: bool = False,
        allowlist: Iterable[str] = (),
        deadline: float | None = None,
        max_bytes: int = MAX_IMAGE_BYTES,
    ) -> bytes:
        """The body of the image at ``url``; ``ImageUnavailable`` or ``ImageTooLarge`` otherwise."""
        from urllib3.exceptions import HTTPError

        ends = time.monotonic() + FETCH_BUDGET_S
        if deadline is not None:
            ends = min(ends, deadline)
        watchdog = _Watchdog(ends)
        try:
            with watchdog:
                return self._follow(url, allow_http, Allowlist.parse(allowlist), watchdog, max_bytes)
        except (_Refused, HTTPError, HTTPException, OSError, ValueError, FutureTimeout) as e:
            reason = "deadline passed" if watchdog.fired else f"{type(e).__name__}: {e}"
            from facegate.observability import logger

            logger.debug("image URL not fetched", extra={"url": _redacted(url), "reason": reason})
            raise ImageUnavailable(FETCH_FAILED) from None

    def _follow(self, url: str, allow_http: bool, allowlist: Allowlist, watchdog: _Watchdog, max_bytes: int) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            target = _Target.parse(url, allow_http=allow_http)
            addresses = self._checked_addresses(target, allowlist, watchdog)
            response = self._request(target, addresses, watchdog)
            try:
                if response.status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise _Refused(f"HTTP {response.status} without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise _Refused(f"HTTP {response.status}")
                body = _read_capped(response, max_bytes)
                if watchdog.fired:  # a body cut short by the deadline can look complete
                    raise _Refused("deadline passed")
                response.release_conn()
                return body
            finally:
                if response.connection is not None:  # not released: not reusable
                    response.close()
        raise _Refused(f"more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _checked_addresses(
        target: _Target, allowlist: Allowlist, watchdog: _Watchdog
    ) -> list[IPv4Address | IPv6Address]:
        lookup = _resolver().submit(socket.getaddrinfo, target.host, target.port, type=socket.SOCK_STREAM)
        infos = lookup.result(timeout=watchdog.remaining())
        addresses = list(dict.fromkeys(ip_address(info[4][0]) for info in infos))
        # Every address must pass, not just one: any could be the one connected to.
        refused = [ip for ip in addresses if not (is_public(ip) or allowlist.allows(target.host, ip))]
        if not addresses or refused:
            raise _Refused(f"{target.host} resolves to a non-public address")
        return addresses

    def _request(
        self, target: _Target, addresses: list[IPv4Address | IPv6Address], watchdog: _Watchdog
    ) -> BaseHTTPResponse:
        from urllib3 import Timeout
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

        headers = {"Host": target.host_header, "User-Agent": "facegate", "Accept": "image/*"}
        failure: Exception = _Refused("no address")
        for ip in addresses:  # the next address only when nothing was sent to this one
            remaining = watchdog.remaining()
            try:
                return self._pool(target, ip).urlopen(
                    "GET",
                    target.path,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    timeout=Timeout(connect=min(CONNECT_TIMEOUT_S, remaining), read=remaining),
                    preload_content=False,
                    decode_content=False,  # the raw bytes are capped: no decompression bombs
                )
            except (NewConnectionError, ConnectTimeoutError) as e:
                failure = e
        raise failure

    def _pool(self, target: _Target, ip: IPv4Address | IPv6Address) -> HTTPConnectionPool:
        from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

        key = (target.scheme, str(ip), target.port, target.host)
        with self._lock:
            pool = self._pools.pop(key, None)
            if pool is None:
                http_cls, https_cls = _connection_classes()
                if target.scheme == "https":
                    import certifi

                    pool = HTTPSConnectionPool(
                        str(ip),
                        target.port,
                        maxsize=2,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=self.ca_certs or certifi.where(),
                        server_hostname=target.host,  # SNI
                        assert_hostname=target.host,  # the certificate must name the host, not the address
                    )
                    pool.ConnectionCls = https_cls
                else:
                    pool = HTTPConnectionPool(str(ip), target.port, maxsize=2)
                    pool.ConnectionCls = http_cls
            self._pools[key] = pool
            while len(self._pools) > _MAX_POOLS:
                self._pools.popitem(last=False)[1].close()
        return pool


def _read_capped(response: BaseHTTPResponse, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageTooLarge("the image at the URL is larger than the limit")
    body = bytearray()
    for chunk in response.stream(_CHUNK, decode_content=False):
        body += chunk
        if len(body) > max_bytes:
            raise ImageTooLarge("the image at the URL is larger than the limit")
    return bytes(body)


@cache
def default_fetcher() -> UrlFetcher:
    return UrlFetcher()
