"""Finding and retrieving a node's results in the region's PACS (Study Root Query/Retrieve).

The harness stored the exam under a fresh Study Instance UID, so the results are the series of
that study that the harness did not send: C-FIND at SERIES level for the study, then C-GET each
new series on one association (C-GET needs no route from the PACS back to the harness, unlike
C-MOVE, so the PACS configuration has to know only the AI node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt

from harness.codes import RESULT_SOP_CLASSES, STUDY_ROOT_FIND, STUDY_ROOT_GET
from harness.dicomnet.scp import ReceivedObject, read_received
from harness.dicomnet.scu import AssociationFailure, Peer


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study as the PACS lists it."""

    series_uid: str
    modality: str
    instances: int | None


def _ae(calling_ae: str, timeout_s: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = min(10.0, timeout_s)
    ae.acse_timeout = min(30.0, timeout_s)
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.maximum_pdu_size = 0
    return ae


def find_series(
    pacs: Peer, calling_ae: str, study_uid: str, *, timeout_s: float = 30.0
) -> list[SeriesInfo]:
    """C-FIND (study root, SERIES level) every series of ``study_uid``; [] if the study is unknown."""
    ae = _ae(calling_ae, timeout_s)
    ae.add_requested_context(STUDY_ROOT_FIND)
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title)
    if not assoc.is_established:
        raise AssociationFailure(f"C-FIND: no association with PACS {pacs}")
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.NumberOfSeriesRelatedInstances = ""
    out: list[SeriesInfo] = []
    try:
        for status, ident in assoc.send_c_find(query, STUDY_ROOT_FIND):
            if not status:
                raise AssociationFailure(f"C-FIND: PACS {pacs} did not answer (timeout or abort)")
            code = int(status.Status)
            if code in (0xFF00, 0xFF01) and ident is not None:
                n = ident.get("NumberOfSeriesRelatedInstances")
                out.append(
                    SeriesInfo(
                        str(ident.get("SeriesInstanceUID", "")),
                        str(ident.get("Modality", "")),
                        int(n) if n not in (None, "") else None,
                    )
                )
            elif code != 0x0000:
                raise AssociationFailure(f"C-FIND: PACS {pacs} answered status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
    return [s for s in out if s.series_uid]


def get_series(
    pacs: Peer,
    calling_ae: str,
    study_uid: str,
    series_uids: Iterable[str],
    store_dir: Path,
    *,
    timeout_s: float = 60.0,
    on_object: Callable[[ReceivedObject], None] | None = None,
) -> list[ReceivedObject]:
    """C-GET the given series into ``store_dir`` (byte-exact) on one association."""
    store_dir.mkdir(parents=True, exist_ok=True)
    received: list[ReceivedObject] = []

    def handle_store(event) -> int:
        path = store_dir / f"{len(received) + 1:06d}_{event.request.AffectedSOPInstanceUID}.dcm"
        path.write_bytes(event.encoded_dataset())
        obj = read_received(path, pacs.ae_title, pacs.host)
        received.append(obj)
        if on_object is not None:
            on_object(obj)
        return 0x0000

    ae = _ae(calling_ae, timeout_s)
    ae.add_requested_context(STUDY_ROOT_GET)
    roles = []
    for sop in RESULT_SOP_CLASSES:
        ae.add_requested_context(sop, ALL_TRANSFER_SYNTAXES)
        roles.append(build_role(sop, scp_role=True))
    assoc = ae.associate(
        pacs.host,
        pacs.port,
        ae_title=pacs.ae_title,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, handle_store)],
    )
    if not assoc.is_established:
        raise AssociationFailure(f"C-GET: no association with PACS {pacs}")
    try:
        for series_uid in series_uids:
            query = Dataset()
            query.QueryRetrieveLevel = "SERIES"
            query.StudyInstanceUID = study_uid
            query.SeriesInstanceUID = series_uid
            final = None
            for status, _ in assoc.send_c_get(query, STUDY_ROOT_GET):
                if not status:
                    raise AssociationFailure(
                        f"C-GET: PACS {pacs} did not answer (timeout or abort)"
                    )
                final = int(status.Status)
            if final not in (0x0000, 0xB000):
                raise AssociationFailure(
                    f"C-GET of series {series_uid}: PACS {pacs} answered status 0x{final or 0:04X}"
                )
    finally:
        if assoc.is_established:
            assoc.release()
    return received
