"""Small hand-made mammography exams, free ports and process control for the DICOM network tests.

The images are tiny (64x52, 12-bit) Digital Mammography For Presentation datasets with the
attributes a mammography AI product keys on, written with pydicom so the tests do not depend on
the reference-set generator. Every helper that starts a process returns something the test
stops in a ``finally``.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from harness.cases.manifest import ImageRef
from harness.exam_input import ExamInput

DM_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
ORIENTATION = {
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
}
DCMTK = (
    "/usr/bin"  # pynetdicom installs console scripts with dcmtk's names; call dcmtk by full path
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def process(args: list[str], port: int | None = None, **kw) -> Iterator[subprocess.Popen]:
    """Run an external server; wait for its port; always terminate it (by its own pid)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    try:
        if port is not None:
            wait_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def make_dm(
    laterality: str,
    view: str,
    study_uid: str,
    series_uid: str,
    *,
    rows: int = 64,
    cols: int = 52,
    seed: int = 0,
    identifiable: bool = False,
    j2k: bool = False,
) -> Dataset:
    """One DM For Presentation image (MONOCHROME2, 12 bits stored) with a bright blob."""
    rng = np.random.default_rng(seed)
    px = rng.integers(200, 800, size=(rows, cols), dtype=np.uint16)
    px[rows // 3 : rows // 3 + 6, cols // 3 : cols // 3 + 6] = 3500
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DM_FOR_PRESENTATION
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DM_FOR_PRESENTATION
    ds.SpecificCharacterSet = "ISO_IR 100"
    if identifiable:
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = (
            "Jensen^Karen",
            "010203-1234",
            "19620301",
        )
    else:
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "SYNTHETIC^E", "E0001", ""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "synthetic phantom"
    ds.PatientSex = "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20250101", "101010", "1", "A1"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MG", 1, 1
    ds.Manufacturer = "SYNTH"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality, ds.ViewPosition = laterality, view
    ds.PatientOrientation = ORIENTATION[(laterality, view)]
    vc = Dataset()
    vc.CodeValue, vc.CodingSchemeDesignator, vc.CodeMeaning = (
        VIEW_CODES[view][0],
        "SCT",
        VIEW_CODES[view][1],
    )
    vc.ViewModifierCodeSequence = Sequence([])
    ds.ViewCodeSequence = Sequence([vc])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", 1
    ds.DetectorType, ds.PositionerType, ds.OrganExposed = "DIRECT", "MAMMOGRAPHIC", "BREAST"
    breast = Dataset()
    breast.CodeValue, breast.CodingSchemeDesignator, breast.CodeMeaning = (
        "76752008",
        "SCT",
        "Breast",
    )
    ds.AnatomicRegionSequence = Sequence([breast])
    ds.AcquisitionContextSequence = Sequence([])
    ds.PixelData = px.tobytes()
    if j2k:
        ds.compress(JPEG2000Lossless)
    return ds


def make_exam(
    root: Path,
    exam_id: str,
    *,
    seed: int = 0,
    identifiable: bool = False,
    j2k: bool = False,
    rows: int = 64,
    cols: int = 52,
) -> ExamInput:
    """Four views of one exam, written under ``root/exam_id`` and returned as an ExamInput."""
    study, series = generate_uid(), generate_uid()
    items = []
    for k, (lat, view) in enumerate((("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))):
        ds = make_dm(
            lat,
            view,
            study,
            series,
            seed=seed * 10 + k,
            identifiable=identifiable,
            j2k=j2k,
            rows=rows,
            cols=cols,
        )
        ds.InstanceNumber = k + 1
        rel = f"{exam_id}/{lat}{view}.dcm"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        items.append((ImageRef(rel, lat, view, hashlib.sha256(path.read_bytes()).hexdigest()), ds))
    return ExamInput(exam_id, tuple(items))


def write_dicom_package(
    root: Path,
    *,
    node_port: int,
    listen_port: int | None = None,
    node_ae: str = "REF_NODE",
    calling_ae: str = "MAMMOCERT",
    timeout_s: float = 20.0,
    fmt: str = "mammography-cad-sr",
    pacs: tuple[str, int] | None = None,
    allow_identifiable: bool = False,
    score_range: tuple[float, float] = (0.0, 100.0),
    extra: dict | None = None,
) -> Path:
    """A DICOM vendor package (vendor.yaml only) for a node on 127.0.0.1; ``extra`` replaces
    top-level fields (the product an installation names, its operating point)."""
    import yaml

    results: dict = {"format": fmt}
    if pacs is not None:
        results["from"] = "pacs"
        results["pacs"] = {"ae_title": pacs[0], "host": "127.0.0.1", "port": pacs[1]}
    else:
        results["listen_port"] = listen_port
    dicom: dict = {
        "ae_title": node_ae,
        "host": "127.0.0.1",
        "port": node_port,
        "calling_ae_title": calling_ae,
        "results": results,
        "timeout_s": timeout_s,
    }
    if allow_identifiable:
        dicom["allow_identifiable"] = True
    doc = {
        "schema": "mammocert/vendor/v1",
        "vendor": "Test",
        "product": "DicomNode",
        "version": "1.0",
        "interface": "dicom",
        "operating_point": 50.0,
        "score_range": list(score_range),
        "dicom": dicom,
    } | (extra or {})
    root.mkdir(parents=True, exist_ok=True)
    (root / "vendor.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


ROUTING_LUA = """
-- The region's routing rule: every mammogram stored in the PACS goes to the AI node.
-- (Results the node stores back are SR, so they are not routed again.)
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags["Modality"] == "MG" then
    SendToModality(instanceId, "ainode")
  end
end
"""


DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"  # Debian orthanc-dicomweb


def _orthanc_config(workdir: Path, http_port: int) -> dict:
    """The settings every test Orthanc shares: loopback only, no authentication, no jobs kept."""
    return {
        "Name": "mammocert-test-pacs",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": http_port,
        "HttpServerEnabled": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "SaveJobs": False,
        "StableAge": 2,
        "ConcurrentJobs": 4,
    }


@contextlib.contextmanager
def orthanc(workdir: Path, *, aet: str, node: tuple[str, int], harness_ae: str) -> Iterator[int]:
    """Orthanc 1.10 as the region's PACS on a free DICOM port, routing MG instances to ``node``
    (AE, port) with a Lua ``OnStoredInstance`` script; yields the DICOM port."""
    import json

    dicom_port, http_port = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "route.lua").write_text(ROUTING_LUA, encoding="utf-8")
    config = _orthanc_config(workdir, http_port) | {
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomCheckModalityHost": False,
        "DicomModalities": {
            "ainode": [node[0], "127.0.0.1", node[1]],
            "harness": [harness_ae, "127.0.0.1", 1],
        },
        "DicomAssociationCloseDelay": 0,
        "LuaScripts": [str(workdir / "route.lua")],
        "DicomScuTimeout": 10,
        # Orthanc closes an association idle for DicomScpTimeout (default 30 s); on a loaded CI
        # machine the harness can take that long between two images of one exam
        "DicomScpTimeout": 120,
    }
    (workdir / "orthanc.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    with process(["Orthanc", str(workdir / "orthanc.json")], port=dicom_port, cwd=workdir) as proc:
        yield dicom_port
        del proc


@contextlib.contextmanager
def orthanc_dicomweb(workdir: Path) -> Iterator[str]:
    """Orthanc 1.10 with its DICOMweb plugin on a free HTTP port (no DIMSE port at all);
    yields the DICOMweb root URL. Skips (fails in CI) without the plugin."""
    import json

    from helpers import _missing

    if not Path(DICOMWEB_PLUGIN).is_file():
        _missing(
            f"Orthanc DICOMweb plugin {DICOMWEB_PLUGIN} not found",
            "apt-get install orthanc-dicomweb",
        )
    http_port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = _orthanc_config(workdir, http_port) | {
        "DicomServerEnabled": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
    }
    (workdir / "orthanc.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    with process(["Orthanc", str(workdir / "orthanc.json")], port=http_port, cwd=workdir) as proc:
        yield f"http://127.0.0.1:{http_port}/dicom-web"
        del proc


def deidentified_set(out: Path, n: int = 4) -> Path:
    """The ONNX tests' hand-made reference set (tests/vendors/mgfactory.py), marked de-identified
    (PatientIdentityRemoved YES, placeholder name) and re-sealed, as a set for a network node."""
    import json

    from pydicom import dcmread
    from vendors.mgfactory import write_set

    from harness.cases.manifest import write_manifest

    write_set(out, n=n)
    data = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for exam in data["exams"]:
        for im in exam["images"]:
            path = out / im["file"]
            ds = dcmread(path)
            ds.PatientIdentityRemoved = "YES"
            ds.PatientName = f"SYNTHETIC^{exam['exam_id']}"
            ds.save_as(path, enforce_file_format=True)
            im["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    data.pop("digest", None)
    write_manifest(out, data)
    return out
