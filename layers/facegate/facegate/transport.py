"""The one place facegate talks HTTP to vendors.

One ``requests.Session`` per container, reused across warm invocations (keep-alive
and TLS sessions survive between calls). TLS verification is always on. Network
failures become facegate errors here, with one distinction the router relies on:
whether the request could have reached the vendor (and so could have been billed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from facegate.errors import VendorConnectionLost, VendorTimeout, VendorUnavailable
from facegate.vendors.base import HttpRequest, HttpResponse

if TYPE_CHECKING:
    import requests


@dataclass(frozen=True)
class Timeouts:
    connect: float = 3.05
    read: float = 10.0


class Transport:
    def __init__(self, timeouts: Timeouts | None = None, timeouts_by_vendor: Mapping[str, Timeouts] | None = None):
        self.timeouts = timeouts or Timeouts()
        self.timeouts_by_vendor = dict(timeouts_by_vendor or {})
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            session = requests.Session()
            # Retry only failures to connect: nothing reached the vendor, nothing was
            # billed. Reads and statuses are never retried here (the router decides).
            retry = Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0, backoff_factor=0.05)
            adapter = HTTPAdapter(max_retries=retry, pool_connections=8, pool_maxsize=16)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.trust_env = False
            self._session = session
        return self._session

    def send(self, vendor: str, request: HttpRequest, *, deadline_s: float | None = None) -> HttpResponse:
        import requests

        t = self.timeouts_by_vendor.get(vendor, self.timeouts)
        read = t.read if deadline_s is None else max(0.1, min(t.read, deadline_s))
        connect = t.connect if deadline_s is None else max(0.1, min(t.connect, deadline_s))
        try:
            r = self.session.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                data=request.body,
                timeout=(connect, read),
                allow_redirects=False,
                verify=True,
            )
        except requests.exceptions.ConnectTimeout:
            raise VendorTimeout(f"{vendor} did not accept a connection in time", sent=False, vendor=vendor) from None
        except requests.exceptions.ReadTimeout:
            raise VendorTimeout(f"{vendor} did not answer in time", sent=True, vendor=vendor) from None
        except requests.exceptions.SSLError:
            raise VendorUnavailable(
                f"{vendor}'s TLS certificate was not accepted", vendor=vendor, billed=False
            ) from None
        except requests.exceptions.ConnectionError as e:
            if _is_connect_failure(e):
                raise VendorUnavailable(f"{vendor} could not be reached", vendor=vendor, billed=False) from None
            # A connection reset after sending can still have been billed.
            raise VendorConnectionLost(f"{vendor} dropped the connection before answering", vendor=vendor) from None
        except requests.exceptions.RequestException:
            raise VendorUnavailable(f"{vendor} request failed", vendor=vendor, billed=None) from None
        return HttpResponse(status=r.status_code, headers=r.headers, body=r.content)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _is_connect_failure(e: Exception) -> bool:
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (NewConnectionError, NameResolutionError, ConnectionRefusedError)):
            return True
        if isinstance(cur, MaxRetryError) and cur.reason is not None:
            cur = cur.reason
            continue
        cur = (
            cur.__cause__
            or cur.__context__
            or (cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None)
        )
    return False


def now_ms() -> int:
    return int(time.time() * 1000)
