"""HTTP for every REST profile: one :class:`RestClient` per run, built from ``vendor.yaml``'s
``rest`` section (docs/contracts.md §3.2), that turns whatever an endpoint does into either a
complete response or a :class:`~harness.errors.VendorFault` with a reason, and records every
attempt in the evidence.

* **Secrets** come from environment variables named in ``rest.auth`` (bearer token or basic
  user/password), never from the file; a variable that is unset is a usage error before any
  request. Only a SHA-256 prefix of a token is recorded.
* **TLS** verifies the server by default against the system store, or ``rest.tls.ca_bundle``;
  ``client_cert``/``client_key`` give mutual TLS; ``verify: false`` is recorded as insecure.
* **Time**: separate connect and read timeouts per request, both capped by the exam's deadline;
  the body is streamed and the deadline is checked between chunks, so a server that trickles
  bytes cannot hold an exam past it.
* **Retries**: bounded (``rest.retries``), only for failures where the request was not processed
  (the connection could not be opened, or a 429/503), waiting ``Retry-After`` when the server
  gives one (refused when it lies beyond the deadline), else a fixed backoff; no jitter, so
  two runs make the same attempts.
* **Errors** are data: status codes outside 2xx become faults naming the status, the kind of
  error body (OIP ``{"error"}``, FastAPI ``{"detail"}``, RFC 9457 problem+json, HTML, text,
  empty) and a short excerpt.
* **JSON** is parsed strictly (:func:`strict_json`): ``NaN``/``Infinity`` tokens, duplicate
  keys and invalid UTF-8 are faults, not numbers.

Every attempt is one line of ``attempts.jsonl`` in the evidence directory (see
:class:`Attempt`).
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.errors import UsageError, VendorFault
from harness.vendors.package import RestSpec, VendorPackage

RETRY_STATUSES = frozenset({429, 503})
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # the wait before retry k when the server names none
EXCERPT_BYTES = 300
MAX_BODY_BYTES = 512 * 1024**2  # a response larger than this is a fault, not a memory blow-up


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt, as recorded in ``attempts.jsonl``."""

    exam_id: str | None
    method: str
    url: str
    attempt: int  # 1-based within this request
    outcome: str  # ok | http-error | connect-error | connect-timeout | read-timeout | tls-error | protocol-error | deadline | too-large
    status: int | None
    elapsed_s: float
    retry_after_s: float | None = None
    error_body: str | None = None  # kind of error body (see error_body_kind)
    excerpt: str | None = None
    body_sha256: str | None = None
    body_bytes: int | None = None


def strict_json(body: bytes, what: str) -> Any:
    """Parse JSON strictly: UTF-8 only, no NaN/Infinity tokens, no duplicate keys.

    Python's ``json`` accepts ``NaN`` and silently keeps the last of duplicate keys; a score
    must never come from either. Raises ``VendorFault`` naming ``what``.
    """

    def bad_constant(token: str) -> Any:
        raise ValueError(f"{token} is not a JSON number")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_constant=bad_constant, object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise VendorFault(f"{what}: response is not UTF-8") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise VendorFault(f"{what}: invalid JSON ({str(exc)[:120]})") from None


def error_body_kind(content_type: str, body: bytes) -> str:
    """What an error body is: oip-error, detail, problem+json, json, html, text or empty."""
    if not body.strip():
        return "empty"
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/problem+json":
        return "problem+json"
    if ctype == "text/html" or body.lstrip()[:1] == b"<":
        return "html"
    try:
        doc = json.loads(body.decode("utf-8"))
    except ValueError:
        return "text"
    if isinstance(doc, dict) and "error" in doc:
        return "oip-error"
    if isinstance(doc, dict) and "detail" in doc:
        return "detail"
    return "json"


def _excerpt(kind: str, body: bytes) -> str:
    """A short, single-line excerpt of an error body (the message field where there is one)."""
    text = body[:4096].decode("utf-8", "replace")
    if kind in ("oip-error", "detail", "problem+json"):
        try:
            doc = json.loads(body.decode("utf-8"))
            field = {"oip-error": "error", "detail": "detail"}.get(kind)
            msg = doc.get(field) if field else (doc.get("detail") or doc.get("title"))
            text = msg if isinstance(msg, str) else json.dumps(msg)
        except ValueError:
            pass
    return " ".join(text.split())[:EXCERPT_BYTES]


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _ssl_context(spec: RestSpec, source: Path) -> ssl.SSLContext | bool:
    tls = spec.tls
    if not tls.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            ctx = ssl.create_default_context(cafile=str(tls.ca_bundle) if tls.ca_bundle else None)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"{source}: rest.tls.ca_bundle {tls.ca_bundle}: not a PEM CA bundle ({exc}); fix the file"
            ) from None
    if tls.client_cert is not None:
        try:
            ctx.load_cert_chain(
                str(tls.client_cert), str(tls.client_key) if tls.client_key else None
            )
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"{source}: rest.tls.client_cert/client_key: cannot load the client certificate "
                f"({exc}); give a PEM certificate and its key"
            ) from None
    return ctx


def _env(name: str, key: str, source: Path) -> str:
    value = os.environ.get(name)
    if not value:
        raise UsageError(
            f"{source}: rest.auth.{key} names environment variable {name}, which is not set; "
            f"export {name} before the run"
        )
    return value


class RestClient:
    """HTTP to one vendor endpoint with the rules of the module docstring.

    ``request`` returns a complete :class:`httpx.Response` with a 2xx status (its body read)
    or raises ``VendorFault``. Thread-safe: httpx's client is, and the attempt log has a lock.
    """

    def __init__(self, pkg: VendorPackage, evidence_dir: Path) -> None:
        spec = pkg.rest
        assert spec is not None
        self.spec = spec
        self.base_url = spec.url.rstrip("/")
        headers = {"User-Agent": "mammocert"}
        auth: httpx.Auth | None = None
        self.auth_fingerprint: str | None = None
        if spec.auth is not None:
            if spec.auth.scheme == "bearer":
                token = _env(str(spec.auth.token_env), "token_env", pkg.source)
                headers["Authorization"] = f"Bearer {token}"
                self.auth_fingerprint = "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]
            else:
                user = _env(str(spec.auth.username_env), "username_env", pkg.source)
                password = _env(str(spec.auth.password_env), "password_env", pkg.source)
                auth = httpx.BasicAuth(user, password)
                self.auth_fingerprint = "basic:" + user
        self.insecure = self.base_url.startswith("https:") and not spec.tls.verify
        self._client = httpx.Client(
            headers=headers,
            auth=auth,
            verify=_ssl_context(spec, pkg.source),
            follow_redirects=False,  # a redirect is the endpoint's answer, recorded as such
            timeout=httpx.Timeout(spec.read_timeout_s, connect=spec.connect_timeout_s),
        )
        evidence_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = evidence_dir / "attempts.jsonl"
        self._log_lock = threading.Lock()

    def url(self, path: str) -> str:
        """``path`` under the base URL; an absolute URL (e.g. a ``Location``) is kept."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + ("" if path.startswith("/") else "/") + path

    def _record(self, attempt: Attempt) -> None:
        line = json.dumps(asdict(attempt), sort_keys=True)
        with self._log_lock, open(self._log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _timeout(self, deadline: float) -> httpx.Timeout:
        left = max(0.05, deadline - time.monotonic())
        return httpx.Timeout(
            min(self.spec.read_timeout_s, left), connect=min(self.spec.connect_timeout_s, left)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        exam_id: str | None = None,
        ok: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request (with bounded retries) and read the whole body before ``deadline``
        (``time.monotonic()``). ``ok`` lists non-2xx statuses the caller handles itself."""
        url = self.url(path)
        what = f"{method} {url}"
        for attempt in range(1, self.spec.retries + 2):
            last = attempt == self.spec.retries + 1
            t0 = time.monotonic()
            if t0 >= deadline:
                raise VendorFault(f"{what}: deadline reached before attempt {attempt}")
            wait: float | None = None

            def record(
                outcome: str,
                status: int | None = None,
                _n: int = attempt,
                _t0: float = t0,
                **extra: Any,
            ) -> None:
                self._record(
                    Attempt(
                        exam_id,
                        method,
                        url,
                        _n,
                        outcome,
                        status,
                        round(time.monotonic() - _t0, 4),
                        **extra,
                    )
                )

            try:
                req = self._client.build_request(
                    method, url, timeout=self._timeout(deadline), **kwargs
                )
                resp = self._client.send(req, stream=True)
            except httpx.ConnectTimeout:
                record("connect-timeout")
                if last:
                    raise VendorFault(f"{what}: connect timeout") from None
            except httpx.ConnectError as exc:
                outcome = "tls-error" if _is_tls(exc) else "connect-error"
                record(outcome)
                if outcome == "tls-error" or last:  # a bad certificate will not improve
                    raise VendorFault(f"{what}: {_reason(exc)}") from None
            except httpx.TimeoutException:
                record("read-timeout")
                raise VendorFault(f"{what}: no response within the read timeout") from None
            except httpx.TransportError as exc:
                record("protocol-error")
                hint = ""
                if url.startswith("https:") and self.spec.tls.client_cert is None:
                    # Under TLS 1.3 a server checks the client certificate after the handshake
                    # and just closes: the client sees no TLS error, only a silent server.
                    hint = "; a server that wants a client certificate (rest.tls.client_cert) does this"
                raise VendorFault(f"{what}: {_reason(exc)}{hint}") from None
            else:
                try:
                    body = self._read(resp, deadline, what)
                except _BodyFault as fault:
                    record(fault.outcome, resp.status_code)
                    raise
                finally:
                    resp.close()
                digest = hashlib.sha256(body).hexdigest()
                if 200 <= resp.status_code < 300 or resp.status_code in ok:
                    record("ok", resp.status_code, body_sha256=digest, body_bytes=len(body))
                    return resp
                kind = error_body_kind(resp.headers.get("content-type", ""), body)
                excerpt = _excerpt(kind, body)
                wait = (
                    retry_after_s(resp.headers.get("retry-after"))
                    if resp.status_code in RETRY_STATUSES
                    else None
                )
                record(
                    "http-error",
                    resp.status_code,
                    retry_after_s=wait,
                    error_body=kind,
                    excerpt=excerpt,
                    body_sha256=digest,
                    body_bytes=len(body),
                )
                reason = (
                    f"{what}: HTTP {resp.status_code} ({kind}{': ' + excerpt if excerpt else ''})"
                )
                if resp.status_code not in RETRY_STATUSES or last:
                    raise VendorFault(reason)
                if wait is not None and time.monotonic() + wait >= deadline:
                    raise VendorFault(f"{reason}; Retry-After {wait:g}s is beyond the deadline")
            pause = wait if wait is not None else BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _read(self, resp: httpx.Response, deadline: float, what: str) -> bytes:
        """The whole body, checking the deadline between chunks (a trickle cannot outlast it)."""
        chunks: list[bytes] = []
        size = 0
        try:
            # No chunk size: httpx would buffer up to it, and a trickle would never reach the
            # deadline check below.
            for chunk in resp.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _fault(
                        f"{what}: response larger than {MAX_BODY_BYTES} bytes", "too-large"
                    )
                if time.monotonic() > deadline:
                    raise _fault(
                        f"{what}: response body still arriving at the deadline", "deadline"
                    )
        except httpx.TimeoutException:
            raise _fault(f"{what}: response body stalled (read timeout)", "read-timeout") from None
        except httpx.TransportError as exc:
            raise _fault(
                f"{what}: response body cut off ({_reason(exc)})", "protocol-error"
            ) from None
        body = b"".join(chunks)
        resp._content = body  # so .content/.json() work on the returned, closed response
        return body

    def json(self, resp: httpx.Response, what: str) -> Any:
        """The response body as strict JSON (see :func:`strict_json`)."""
        return strict_json(resp.content, what)

    def close(self) -> None:
        self._client.close()


class _BodyFault(VendorFault):
    """A fault while reading a body; ``outcome`` is its class in the attempt log."""

    def __init__(self, reason: str, outcome: str) -> None:
        super().__init__(reason)
        self.outcome = outcome


def _fault(reason: str, outcome: str) -> _BodyFault:
    return _BodyFault(reason, outcome)


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "certificate" in str(exc).lower()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError):
        text = str(exc) or type(exc).__name__
        if "refused" in text.lower():
            return "connection refused"
        return ("TLS failure: " if _is_tls(exc) else "cannot connect: ") + text[:160]
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error ({str(exc)[:160]})"
    if isinstance(exc, httpx.ReadError):
        return f"connection reset ({str(exc)[:120] or 'read error'})"
    return f"{type(exc).__name__}: {str(exc)[:160]}"
