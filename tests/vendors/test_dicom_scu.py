"""The harness's Storage SCU against dcmtk storescp: one association per study, JPEG 2000 kept
when the peer accepts it, decompressed when the peer takes only uncompressed data."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_testkit import DCMTK, free_port, make_exam, process
from helpers import require_tool
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless

from harness.dicomnet.scu import AssociationFailure, Peer, echo, send_study

pytestmark = pytest.mark.external


@pytest.mark.parametrize(
    ("storescp_ts", "expect"), [([], "uncompressed"), (["+xv"], str(JPEG2000Lossless))]
)
def test_send_study_to_storescp(tmp_path, storescp_ts, expect):
    require_tool(f"{DCMTK}/storescp", "apt-get install dcmtk")
    exam = make_exam(tmp_path / "set", "E1", j2k=True)
    originals = [ds.pixel_array.copy() for _, ds in exam.images]
    port = free_port()
    out = tmp_path / "in"
    out.mkdir()
    with process(
        [f"{DCMTK}/storescp", *storescp_ts, "-od", str(out), "-aet", "NODE", str(port)], port=port
    ):
        peer = Peer("NODE", "127.0.0.1", port)
        echo(peer, "MAMMOCERT")
        outcome = send_study(peer, "MAMMOCERT", [ds for _, ds in exam.images], timeout_s=30)
    assert outcome.sent == 4 and set(outcome.transfer_syntaxes) == {expect}
    assert outcome.decompressed == (4 if expect == "uncompressed" else 0)
    got = sorted(out.iterdir())
    assert len(got) == 4
    by_uid = {
        str(ds.SOPInstanceUID): (ds, px) for (_, ds), px in zip(exam.images, originals, strict=True)
    }
    for p in got:
        ds = dcmread(p)
        src, px = by_uid[str(ds.SOPInstanceUID)]
        assert (ds.file_meta.TransferSyntaxUID == JPEG2000Lossless) == (expect != "uncompressed")
        if (
            expect == "uncompressed"
        ):  # dcmtk cannot decode JPEG 2000; compare pixels where it stored them raw
            assert np.array_equal(ds.pixel_array, px)
        else:
            assert ds.PixelData == src.PixelData


def test_echo_and_store_to_nothing_fail_with_a_reason():
    peer = Peer("NODE", "127.0.0.1", free_port())
    with pytest.raises(
        AssociationFailure,
        match=r"C-ECHO: no association with NODE@127\.0\.0\.1:\d+ \(connection refused\)",
    ):
        echo(peer, "MAMMOCERT")


def test_refused_association_is_a_rejection(tmp_path):
    require_tool(f"{DCMTK}/storescp", "apt-get install dcmtk")
    port = free_port()
    exam = make_exam(tmp_path / "set", "E1")
    with process([f"{DCMTK}/storescp", "--refuse", str(port)], port=port):
        # dcmtk refuses the association; under load it sometimes aborts the connection instead:
        # either way the send fails with the peer's reason, never a crash or a hang.
        with pytest.raises(AssociationFailure, match="rejected by NODE|aborted"):
            send_study(
                Peer("NODE", "127.0.0.1", port),
                "MAMMOCERT",
                [ds for _, ds in exam.images],
                timeout_s=10,
            )
