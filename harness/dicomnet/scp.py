"""A Storage SCP that receives whatever a node or PACS sends and hands each object on.

It accepts every storage SOP class (and unknown/private ones) in every transfer syntax, plus
Verification, binds 127.0.0.1 unless told otherwise, writes each object byte-exact to
``store_dir`` (no decode in the association thread: a handler exception would be answered
0xC211, and slow handlers stall the sender), then calls ``on_object`` with a small header read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt

from harness.codes import VERIFICATION

log = logging.getLogger(__name__)

# Results come as any storage class, including private ones (secondary captures, PDFs, ...).
_config.UNRESTRICTED_STORAGE_SERVICE = True


@dataclass(frozen=True)
class ReceivedObject:
    """One object received by C-STORE."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    modality: str
    calling_ae: str
    peer_host: str


def read_received(path: Path, calling_ae: str = "", peer_host: str = "") -> ReceivedObject:
    """Header of a stored object (pixels are not read)."""
    ds = dcmread(path, stop_before_pixels=True, force=True)
    return ReceivedObject(
        path,
        str(ds.get("SOPClassUID", "")),
        str(ds.get("SOPInstanceUID", "")),
        str(ds.get("StudyInstanceUID", "")),
        str(ds.get("SeriesInstanceUID", "")),
        str(ds.get("Modality", "")),
        calling_ae,
        peer_host,
    )


class StorageSCP:
    """Receive C-STORE requests on ``host:port`` as ``ae_title``; ``start``/``stop`` it explicitly."""

    def __init__(
        self,
        ae_title: str,
        port: int,
        store_dir: Path,
        on_object: Callable[[ReceivedObject], None],
        *,
        host: str = "127.0.0.1",
        network_timeout: float = 300.0,
    ) -> None:
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.store_dir = Path(store_dir)
        self._on_object = on_object
        self._server = None
        self._count = 0
        self._lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        ae.maximum_pdu_size = 0
        ae.network_timeout = network_timeout
        ae.dimse_timeout = network_timeout
        ae.require_called_aet = False
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(VERIFICATION)
        self._ae = ae

    def _handle_store(self, event) -> int:
        with self._lock:
            self._count += 1
            n = self._count
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        path = self.store_dir / f"{n:06d}_{sop_uid}.dcm"
        try:
            path.write_bytes(event.encoded_dataset())
            requestor = event.assoc.requestor
            obj = read_received(path, str(requestor.ae_title).strip(), str(requestor.address))
        except (
            Exception
        ) as exc:  # a malformed object is the sender's fault: refuse it, keep serving
            log.warning("refused object %s: %s", sop_uid, exc)
            return 0xC000
        try:
            self._on_object(obj)
        except Exception:  # a bug in the consumer must not answer the sender with a failure
            log.exception("result consumer failed on %s", path)
        return 0x0000

    def start(self) -> StorageSCP:
        """Start serving in background threads (returns once the socket is bound)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._server = self._ae.start_server(
            (self.host, self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._handle_store)],
        )
        self.port = int(self._server.server_address[1])
        return self

    def stop(self) -> None:
        """Stop the server and close every association."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._ae.shutdown()

    def __enter__(self) -> StorageSCP:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
