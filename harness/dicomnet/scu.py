"""The harness as a Storage SCU: C-ECHO a peer, and send one study per association.

Presentation contexts: for every SOP class in the study, one context offering JPEG 2000
lossless and one offering explicit/implicit VR little endian (a separate context per compressed
transfer syntax is what lets a peer refuse compression without refusing the SOP class). A
dataset is sent in its own transfer syntax when the peer accepted it; a compressed dataset the
peer will not take compressed is decompressed first (pynetdicom converts only between the
uncompressed syntaxes). All views of a study go on one association, released explicitly:
some AI nodes treat A-RELEASE as "study complete".

Failures are :class:`AssociationFailure` with a one-line reason; the adapter turns them into
per-exam vendor faults.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE

from harness.codes import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    JPEG2000_LOSSLESS,
    UNCOMPRESSED,
    VERIFICATION,
)
from harness.pixels import CODEC_LOCK, transfer_syntax


class AssociationFailure(Exception):
    """The peer could not be reached, rejected or aborted the association, or refused a store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Peer:
    """A remote application entity."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one study: per dataset the transfer syntax used; how many were decompressed."""

    sent: int
    transfer_syntaxes: tuple[str, ...]
    decompressed: int


def _ae(calling_ae: str, timeout_s: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = min(10.0, timeout_s)
    ae.acse_timeout = min(30.0, timeout_s)
    # pynetdicom defaults (dimse 30 s, network 60 s) are too short for an AI node that answers
    # C-STORE only after inference; the exam's own timeout bounds every wait instead.
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.maximum_pdu_size = 0
    return ae


def _reachable(peer: Peer) -> str | None:
    """None if a TCP connection opens, else why not (pynetdicom reports a refused connection as an abort)."""
    try:
        with socket.create_connection((peer.host, peer.port), timeout=5):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _assoc_failure(assoc, peer: Peer, what: str) -> AssociationFailure:
    if assoc.is_rejected:
        return AssociationFailure(f"{what}: association rejected by {peer}")
    why = _reachable(peer)
    if why is not None:
        return AssociationFailure(f"{what}: no association with {peer} ({why.lower()})")
    if assoc.is_aborted:
        return AssociationFailure(f"{what}: association aborted by {peer}")
    return AssociationFailure(
        f"{what}: no association with {peer} (no answer to the association request)"
    )


def echo(peer: Peer, calling_ae: str, timeout_s: float = 10.0) -> None:
    """C-ECHO ``peer``; raise :class:`AssociationFailure` when it does not answer with success."""
    ae = _ae(calling_ae, timeout_s)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise _assoc_failure(assoc, peer, "C-ECHO")
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if not status or status.get("Status") != 0x0000:
        raise AssociationFailure(f"C-ECHO: {peer} answered {_status_text(status)}")


def _status_text(status: Dataset | None) -> str:
    if not status or "Status" not in status:
        return "nothing (timeout or abort)"
    return f"status 0x{int(status.Status):04X}"


def send_study(
    peer: Peer,
    calling_ae: str,
    datasets: Sequence[Dataset],
    *,
    timeout_s: float,
    offer_compressed: bool = True,
) -> StoreOutcome:
    """C-STORE every dataset of one study on one association; raise on any failure.

    ``offer_compressed=False`` proposes only the uncompressed syntaxes (every JPEG 2000 dataset
    is then decompressed before sending).
    """
    if not datasets:
        raise ValueError("nothing to send")
    ae = _ae(calling_ae, timeout_s)
    sop_classes = sorted({str(ds.SOPClassUID) for ds in datasets})
    if 2 * len(sop_classes) > 128:
        raise AssociationFailure(
            f"study has {len(sop_classes)} SOP classes; at most 64 fit one association"
        )
    for sop in sop_classes:
        if offer_compressed:
            ae.add_requested_context(sop, [JPEG2000_LOSSLESS])
        ae.add_requested_context(sop, list(UNCOMPRESSED))
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise _assoc_failure(assoc, peer, "C-STORE")
    accepted: dict[str, set[str]] = {}
    for cx in assoc.accepted_contexts:
        accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
    used: list[str] = []
    decompressed = 0
    try:
        for n, ds in enumerate(datasets, 1):
            sop = str(ds.SOPClassUID)
            ts = transfer_syntax(ds)
            ok = accepted.get(sop, set())
            if not ok:
                raise AssociationFailure(
                    f"C-STORE: {peer} accepted no presentation context for SOP class {sop}"
                )
            if ts.is_compressed and str(ts) not in ok:
                # Peer refused this compression: send the same pixels uncompressed.
                with CODEC_LOCK:
                    ds.decompress()
                decompressed += 1
                ts = EXPLICIT_VR_LITTLE_ENDIAN
            t0 = time.monotonic()
            status = assoc.send_c_store(ds)
            if not status or "Status" not in status:
                # An empty status: the peer aborted or closed the association, or never answered
                # (only then has the DIMSE timeout elapsed; the abort flag may be set a moment later).
                gone = (
                    assoc.is_aborted
                    or not assoc.is_established
                    or time.monotonic() - t0 < timeout_s
                )
                what = "aborted" if gone else "timed out"
                raise AssociationFailure(
                    f"C-STORE: association {what} by {peer} after {n - 1} of {len(datasets)} images"
                )
            code = int(status.Status)
            if code not in (0x0000, 0xB000, 0xB006, 0xB007):  # success and warnings
                raise AssociationFailure(
                    f"C-STORE: {peer} refused image {n} of {len(datasets)} with status 0x{code:04X}"
                )
            used.append(str(ts) if ts.is_compressed else "uncompressed")
    finally:
        if assoc.is_established:
            assoc.release()
    return StoreOutcome(len(used), tuple(used), decompressed)
