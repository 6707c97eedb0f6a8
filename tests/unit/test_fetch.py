"""Image URLs never reach an internal address (facegate.fetch), with real loopback servers that count requests.

Every refusal test runs with plain http allowed and the allowlist empty, so only the address check can
stop the request: each server must see zero requests.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from facegate import errors
from facegate.fetch import FETCH_FAILED, MAX_REDIRECTS, UrlFetcher

IMAGE = b"\x89PNG not really, the fetcher does not decode" * 10


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        box: Box = self.server.box  # type: ignore[attr-defined]
        box.record(self)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/img":
            self._send(200, IMAGE)
        elif parts.path == "/redirect":
            self.send_response(int(query.get("status", ["302"])[0]))
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/big":
            size = int(query["size"][0])
            self.send_response(200)
            if "declared" in query:
                self.send_header("Content-Length", str(size))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * size)
            self.close_connection = True
        elif parts.path == "/drip":  # a body of a few bytes a second
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self._drip(b"12345678")
        elif parts.path == "/drip-headers":  # the headers themselves, a header a second
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._drip(b"X-Slow: 1\r\n")
        else:
            self._send(404, b"no")

    def _drip(self, piece: bytes) -> None:
        try:
            for _ in range(30):
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass
        self.close_connection = True

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Box:
    """A loopback server that counts the requests (and connections) it receives."""

    def __init__(self, host: str, port: int = 0, tls: ssl.SSLContext | None = None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_cls = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self.server = server_cls((host, port), _Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.box = self  # type: ignore[attr-defined]
        self.host, self.port = host, self.server.server_address[1]
        self.requests: list[dict] = []
        self.connections: set[int] = set()
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append({"path": handler.path, "host": handler.headers.get("Host")})
        self.connections.add(handler.client_address[1])

    def url(self, path: str = "/img", scheme: str = "http") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def boxes():
    made: list[Box] = []

    def make(host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> Box:
        made.append(Box(host, port, tls))
        return made[-1]

    yield make
    for box in made:
        box.close()


@pytest.fixture
def fetcher():
    return UrlFetcher()


def refused(fetcher: UrlFetcher, url: str, **kw) -> str:
    kw.setdefault("allow_http", True)
    with pytest.raises(errors.ImageUnavailable) as e:
        fetcher.fetch(url, deadline=time.monotonic() + 5, **kw)
    assert e.value.status == 422 and e.value.code == "IMAGE_UNAVAILABLE"
    return str(e.value)


# --- every spelling of loopback, fetched directly ------------------------------------------------

LOOPBACK_V4_FORMS = (
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "127.0.0.1.",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "127.1",
    "0.0.0.0",  # noqa: S104 (a URL host, nothing binds here)
    "[::ffff:127.0.0.1]",
)


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("host", LOOPBACK_V4_FORMS)
def test_loopback_forms_get_no_request(boxes, fetcher, host, scheme):
    box = boxes("127.0.0.1")
    message = refused(fetcher, f"{scheme}://{host}:{box.port}/img")
    assert message == FETCH_FAILED
    assert box.requests == [] and box.connections == set()


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("host", ["[::1]", "localhost", "[0:0:0:0:0:0:0:1]", "[::]"])
def test_ipv6_loopback_gets_no_request(boxes, fetcher, host):
    box = boxes("::1")
    assert refused(fetcher, f"http://{host}:{box.port}/img") == FETCH_FAILED
    assert box.requests == []


def test_the_same_server_answers_once_allowlisted(boxes, fetcher):
    """The loopback servers above are really reachable: only the address check kept them out."""
    box = boxes("127.0.0.1")
    url = box.url("/img")
    assert fetcher.fetch(url, allow_http=True, allowlist=["127.0.0.1/32"]) == IMAGE
    assert fetcher.fetch(url.replace("127.0.0.1", "localhost"), allow_http=True, allowlist=["localhost"]) == IMAGE
    assert fetcher.fetch(url, allow_http=True, allowlist=["127.0.0.1"]) == IMAGE
    assert len(box.requests) == 3
    assert box.requests[1]["host"] == f"localhost:{box.port}"  # Host is the name, the socket the checked address
    assert len(box.connections) <= 2  # the pinned pool keeps the connection alive between fetches


def test_an_allowlist_never_lifts_the_scheme_rule(boxes, fetcher):
    box = boxes("127.0.0.1")
    assert refused(fetcher, box.url("/img"), allow_http=False, allowlist=["127.0.0.1/32"]) == FETCH_FAILED
    assert box.requests == []


# --- names that resolve to internal addresses; rebinding --------------------------------------------


def _resolving(monkeypatch, answers: dict[str, list[str]]) -> dict[str, int]:
    """Patch the resolver: each name in ``answers`` resolves to its next address (the last one repeats)."""
    real = socket.getaddrinfo
    lookups = dict.fromkeys(answers, 0)

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            ip = answers[host][min(lookups[host], len(answers[host]) - 1)]
            lookups[host] += 1
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_a_name_resolving_to_loopback_gets_no_request(boxes, fetcher, monkeypatch):
    box = boxes("127.0.0.1")
    lookups = _resolving(monkeypatch, {"rebind.example": ["127.0.0.1"]})
    assert refused(fetcher, f"http://rebind.example:{box.port}/img") == FETCH_FAILED
    assert lookups["rebind.example"] == 1 and box.requests == []


def test_no_second_lookup_can_rebind_the_name(boxes, fetcher, monkeypatch):
    """The name is resolved once; the connection goes to the address that was checked."""
    internal = boxes("127.0.0.1")
    allowed = boxes("127.0.0.2", internal.port)  # same port: only the address tells them apart
    lookups = _resolving(monkeypatch, {"rebind.example": ["127.0.0.2", "127.0.0.1"]})
    url = f"http://rebind.example:{internal.port}/img"
    assert fetcher.fetch(url, allow_http=True, allowlist=["127.0.0.2/32"]) == IMAGE
    assert lookups["rebind.example"] == 1
    assert internal.requests == [] and allowed.requests == [{"path": "/img", "host": f"rebind.example:{internal.port}"}]


def test_a_mix_of_public_and_internal_addresses_is_refused(boxes, fetcher, monkeypatch):
    box = boxes("127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", _both(socket.getaddrinfo, "mixed.example", box.port))
    assert refused(fetcher, f"http://mixed.example:{box.port}/img") == FETCH_FAILED
    assert box.requests == []


def _both(real, name, port):
    def getaddrinfo(host, *args, **kwargs):
        if host == name:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return real(host, *args, **kwargs)

    return getaddrinfo


# --- redirects --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost", "2130706433", "[::ffff:127.0.0.1]"])
def test_a_redirect_to_an_internal_address_gets_no_request(boxes, fetcher, status, target_host):
    target = boxes("127.0.0.1")
    redirector = boxes("127.0.0.2")  # allowlisted alone: it stands in for a public first hop
    to = f"http://{target_host}:{target.port}/img"
    message = refused(fetcher, redirector.url(f"/redirect?status={status}&to={to}"), allowlist=["127.0.0.2/32"])
    assert message == FETCH_FAILED
    assert len(redirector.requests) == 1 and target.requests == []


def test_an_allowed_redirect_is_followed(boxes, fetcher):
    target = boxes("127.0.0.1")
    redirector = boxes("127.0.0.2")
    url = redirector.url(f"/redirect?to={target.url('/img')}")
    assert fetcher.fetch(url, allow_http=True, allowlist=["127.0.0.0/30"]) == IMAGE
    assert len(target.requests) == 1


def test_redirects_are_limited(boxes, fetcher):
    box = boxes("127.0.0.2")
    assert refused(fetcher, box.url("/loop"), allowlist=["127.0.0.2/32"]) == FETCH_FAILED
    assert len(box.requests) == MAX_REDIRECTS + 1


def test_a_redirect_to_plain_http_is_refused_where_http_is_not_allowed(boxes, tls):
    """https -> http://127.0.0.1: the scheme rule holds on every hop, as the address rule does."""
    target = boxes("127.0.0.1")
    redirector = boxes("127.0.0.2", tls=tls.server)
    url = redirector.url(f"/redirect?to={target.url('/img')}", scheme="https")
    fetcher = UrlFetcher(ca_certs=tls.ca_file)
    for allow_http in (False, True):  # refused by the scheme, then by the address
        assert refused(fetcher, url, allow_http=allow_http, allowlist=["127.0.0.2/32"]) == FETCH_FAILED
    assert len(redirector.requests) == 2 and target.requests == []


# --- TLS: pinned to the checked address, verified for the host name ---------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A test CA and a server certificate for ``img.test`` and 127.0.0.2."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, issuer, key, signer, *, ca, sans=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        )
        if ca:
            usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"))
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                    **{k: False for k in usage},
                ),
                critical=True,
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("facegate test CA", "facegate test CA", ca_key, ca_key, ca=True)
    sans = [x509.DNSName("img.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.2"))]
    leaf = cert("img.test", "facegate test CA", key, ca_key, ca=False, sans=sans)
    folder = tmp_path_factory.mktemp("tls")
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(
        leaf.public_bytes(pem) + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "server.pem")
    names: list[str | None] = []
    server.sni_callback = lambda sock, name, ctx: names.append(name)

    class Tls:
        pass

    out = Tls()
    out.server, out.ca_file, out.sni = server, str(folder / "ca.pem"), names
    return out


def test_https_connects_to_the_checked_address_with_the_host_name_for_sni_host_and_certificate(boxes, tls, monkeypatch):
    box = boxes("127.0.0.2", tls=tls.server)
    lookups = _resolving(monkeypatch, {"img.test": ["127.0.0.2", "127.0.0.1"], "other.test": ["127.0.0.2"]})
    fetcher = UrlFetcher(ca_certs=tls.ca_file)
    tls.sni.clear()
    assert fetcher.fetch(f"https://img.test:{box.port}/img", allowlist=["127.0.0.2/32"]) == IMAGE
    assert tls.sni == ["img.test"] and box.requests[-1]["host"] == f"img.test:{box.port}"
    assert lookups["img.test"] == 1
    # The same server, reached by a name its certificate does not carry: verification fails.
    assert refused(fetcher, f"https://other.test:{box.port}/img", allowlist=["127.0.0.2/32"]) == FETCH_FAILED
    # And with the system's trust store (no test CA), nothing is trusted either.
    assert refused(UrlFetcher(), f"https://img.test:{box.port}/img", allowlist=["127.0.0.2/32"]) == FETCH_FAILED
    assert len(box.requests) == 1


# --- the metadata service: refused before any connection ---------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://169.254.169.254/latest/api/token",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",
        "http://100.64.0.1/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://224.0.0.1/",
        "http://[fe80::1]/",
        "http://[2001:db8::1]/",
    ],
)
def test_internal_addresses_are_refused_before_any_connection(fetcher, monkeypatch, url):
    import urllib3.util.connection

    connects = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connects.append(a))
    monkeypatch.setattr(urllib3.util.connection, "create_connection", lambda *a, **k: connects.append(a))
    assert refused(fetcher, url) == FETCH_FAILED
    assert connects == []


# --- the deadline and the size cap -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_a_slow_drip_is_cut_off_at_the_deadline(boxes, fetcher, path):
    box = boxes("127.0.0.1")
    started = time.monotonic()
    with pytest.raises(errors.ImageUnavailable) as e:
        fetcher.fetch(box.url(path), allow_http=True, allowlist=["127.0.0.1/32"], deadline=started + 1.5)
    took = time.monotonic() - started
    assert str(e.value) == FETCH_FAILED
    assert len(box.requests) == 1  # it was reached, and kept sending
    assert 1.4 <= took < 2.0, took


def test_a_deadline_already_passed_sends_nothing(boxes, fetcher):
    box = boxes("127.0.0.1")
    with pytest.raises(errors.ImageUnavailable):
        fetcher.fetch(box.url(), allow_http=True, allowlist=["127.0.0.1/32"], deadline=time.monotonic() - 1)
    assert box.requests == []


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_cap_is_image_too_large(boxes, fetcher, declared):
    """Documented choice: 413 IMAGE_TOO_LARGE (the image is the caller's, the network is not described)."""
    box = boxes("127.0.0.1")
    url = box.url(f"/big?size=5001{'&declared=1' if declared else ''}")
    with pytest.raises(errors.ImageTooLarge) as e:
        fetcher.fetch(url, allow_http=True, allowlist=["127.0.0.1/32"], max_bytes=5000)
    assert e.value.status == 413
    assert fetcher.fetch(url.replace("5001", "5000"), allow_http=True, allowlist=["127.0.0.1/32"], max_bytes=5000)


# --- one message for every refusal -------------------------------------------------------------------------


def test_every_refusal_and_failure_says_the_same_thing(boxes, fetcher, monkeypatch):
    box = boxes("127.0.0.1")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    _resolving(monkeypatch, {"internal.example": ["10.1.2.3"]})
    allow = ["127.0.0.1/32"]
    messages = {
        refused(fetcher, box.url()),  # loopback
        refused(fetcher, "http://internal.example/"),  # a name for a private address
        refused(fetcher, box.url("/missing"), allowlist=allow),  # 404 from a reachable host
        refused(fetcher, f"http://127.0.0.1:{closed_port}/img", allowlist=allow),  # connection refused
        refused(fetcher, "http://no-such-host.invalid/img"),  # no such name
        refused(fetcher, box.url(), allow_http=False, allowlist=allow),  # plain http
        refused(fetcher, f"https://user:pw@127.0.0.1:{box.port}/img", allowlist=allow),  # userinfo
        refused(fetcher, "ftp://example.com/a.jpg"),
        refused(fetcher, "https://exa mple.com/a.jpg"),
        refused(fetcher, "https:///a.jpg"),
        refused(fetcher, "https://example.com:99999/a.jpg"),
    }
    assert messages == {FETCH_FAILED}
    assert len(box.requests) == 1  # only the allowlisted 404


def test_the_reason_is_logged_at_debug_level_without_path_or_query(boxes, fetcher, caplog):
    import logging

    box = boxes("127.0.0.1")
    with caplog.at_level(logging.DEBUG, logger="facegate"):
        refused(fetcher, box.url("/photos/11010519491231002X.jpg?token=secret-value"))
    (record,) = [r for r in caplog.records if r.getMessage() == "image URL not fetched"]
    assert "non-public address" in record.reason
    # Where it pointed only: a path or query may name a person or carry a token.
    assert record.url == box.url("")
    assert "11010519491231002X" not in caplog.text and "secret-value" not in caplog.text
