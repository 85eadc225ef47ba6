"""Vendor packages (docs/contracts.md §3.2): load, validate and fingerprint ``vendor.yaml`` + artifacts.

A package is a directory or a ``.zip`` holding ``vendor.yaml`` at its top level. Loading it
refuses anything unsafe *before* a single case runs:

* ``vendor.yaml`` is validated against ``vendor.schema.json`` (``additionalProperties: false``
  everywhere); the first error becomes one line naming the key path and the fix.
* zips are extracted into a private temporary directory (removed at exit) with members checked
  first: no absolute paths, no ``..``, no symlinks (Unix mode in the external attributes), at
  most ``MAX_MEMBERS`` members and ``MAX_TOTAL_BYTES`` uncompressed bytes (counted while
  writing, so a lying header cannot blow past it).
* directories may not contain symlinks that resolve outside the package.
* ONNX models: every tensor with external data must name a file inside the package (checked
  without loading the data); only the standard domains ('', 'ai.onnx', 'ai.onnx.ml') may
  appear in opset imports or nodes (custom ops are refused, also inside subgraphs); the declared
  input and outputs are checked against the graph (names, float32, NCHW rank 4, channel count
  of the unit, height/width equal or dynamic).
* ``onnx.batch_size`` (default 1) above 1 needs a graph whose batch dimension is dynamic.
* every interface section has a per-exam deadline ``timeout_s`` (default 300 s), a finite number
  of seconds > 0; :attr:`VendorPackage.timeout_s` is the active interface's.
* ``operating_point`` is on the model's own scale, like ``score_range`` (a [0, 100] model writes
  60, not 0.6), and must lie within the range; :attr:`VendorPackage.operating_point` is it mapped
  onto [0, 1] like every score, the threshold every criterion applies.

Digests: ``model_digests`` maps each artifact (the ONNX model, every external-data file, and
``vendor.yaml`` itself, since it fixes preprocessing and the operating point) to its bare hex
SHA-256. ``package_digest`` is ``sha256:`` + SHA-256 of the canonical JSON of
``{"files": {relative_path: sha256}}`` over every regular file of the package, so a directory
and a zip of the same files have the same digest.
"""

from __future__ import annotations

import atexit
import json
import lzma
import math
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

from harness import yamlio
from harness.errors import VendorPackageError
from harness.fsio import NAME_MAX
from harness.jsonutil import canonical_json, sha256_bytes, sha256_file
from harness.schemas import best_error, schema_message

SCHEMA_PATH = Path(__file__).with_name("vendor.schema.json")
MAX_MEMBERS = 1000
MAX_TOTAL_BYTES = 4 * 1024**3
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
UNIT_CHANNELS = {"image": 1, "breast": 2, "exam": 4}
FLOAT32 = 1  # onnx.TensorProto.FLOAT
DEFAULT_TIMEOUT_S = 300.0  # per-exam deadline of every interface unless its section sets timeout_s


@dataclass(frozen=True)
class OnnxInputSpec:
    """How exams become the model input tensor."""

    unit: str
    name: str
    height: int
    width: int
    orientation: str = "chest_wall_left"
    pixels: str = "presentation"
    scale: tuple[float, float] = (0.0, 1.0)
    resize: str = "fit"

    @property
    def channels(self) -> int:
        return UNIT_CHANNELS[self.unit]


@dataclass(frozen=True)
class OnnxGraphFacts:
    """What the graph itself says about its input/outputs (checked against the spec)."""

    batch_dynamic: bool
    heatmap_channels: int | None  # None: no heatmap, or its channel dim is dynamic


@dataclass(frozen=True)
class OnnxSpec:
    """The ``onnx`` section."""

    model: str
    input: OnnxInputSpec
    score_output: str
    heatmap_output: str | None
    aggregate: str
    graph: OnnxGraphFacts
    breast_scores_output: str | None = None  # unit exam: (N, 2) scores [L, R]
    timeout_s: float = DEFAULT_TIMEOUT_S
    batch_size: int = 1  # exams per session call (the local executor groups them)

    def model_path(self, root: Path) -> Path:
        return root / self.model


@dataclass(frozen=True)
class PacsSpec:
    """A PACS the harness queries for results (``dicom.results.from: pacs``)."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class DicomResultsSpec:
    """Where and in which form a DICOM node returns its results."""

    format: str
    source: str = "push"  # yaml key ``from``: push (node C-STOREs to us) | pacs
    listen_port: int | None = None
    score_code: tuple[str, str] = ("111047", "DCM")
    score_scale: tuple[float, float] | None = None
    pacs: PacsSpec | None = None


@dataclass(frozen=True)
class DicomSpec:
    """The ``dicom`` section."""

    ae_title: str
    host: str
    port: int
    calling_ae_title: str
    results: DicomResultsSpec
    timeout_s: float = DEFAULT_TIMEOUT_S
    allow_identifiable: bool = False


@dataclass(frozen=True)
class RestAuthSpec:
    """``rest.auth``: the scheme and the environment variables that hold the secrets."""

    scheme: str  # bearer | basic
    token_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None


@dataclass(frozen=True)
class RestTlsSpec:
    """``rest.tls``: paths already resolved (relative ones against the package root)."""

    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True


@dataclass(frozen=True)
class OipOutputSpec:
    """``rest.oip.output``: which response tensors carry what."""

    score: str
    study_uid: str
    heatmap: str | None = None
    breast_scores: str | None = None


@dataclass(frozen=True)
class OipSpec:
    """``rest.oip``: the model on an Open Inference Protocol (KServe V2) server and the tensor
    binding, whose input is built exactly as an ONNX package's ``onnx.input``."""

    model: str
    input: OnnxInputSpec
    output: OipOutputSpec
    version: str | None = None
    encoding: str = "auto"  # auto | json | binary
    study_uid_input: str = "study_uid"
    aggregate: str = "max"


@dataclass(frozen=True)
class DicomwebSpec:
    """``rest.dicomweb``: STOW-RS the exam, find and fetch the result report by QIDO/WADO-RS."""

    format: str  # mammography-cad-sr | tid1500-sr
    score_code: tuple[str, str] = ("111047", "DCM")
    score_scale: tuple[float, float] | None = None
    poll_interval_s: float = 0.5
    workitem: bool = False
    task_manager_url: str | None = None  # UPS-RS root when not rest.url itself


@dataclass(frozen=True)
class JsonJobFindingSpec:
    """``rest.json_job.result.finding``: JMESPath expressions over one finding."""

    sop_instance_uid: str
    x: str
    y: str
    score: str
    laterality: str | None = None  # the vendor's side of the finding, checked against the image


@dataclass(frozen=True)
class JsonJobResultSpec:
    """``rest.json_job.result``: JMESPath expressions mapping the vendor's JSON to predictions."""

    exam_score: str
    state: str | None = None
    pending: tuple[str, ...] = ("queued", "running", "pending")
    failed: tuple[str, ...] = ("failed", "error")
    rejected: tuple[str, ...] = ("rejected",)
    breast_scores: Mapping[str, str] = field(default_factory=dict)  # "L"/"R" -> expression
    study_uid: str | None = None
    findings: str | None = None
    finding: JsonJobFindingSpec | None = None


@dataclass(frozen=True)
class JsonJobSpec:
    """``rest.json_job``: a vendor's own JSON API (upload, then a result or a 202 job to poll)."""

    submit_path: str
    result: JsonJobResultSpec
    body: str = "multipart"  # multipart | json
    poll_interval_s: float = 0.5


@dataclass(frozen=True)
class RestSpec:
    """The ``rest`` section: the transport every profile shares, and the active profile's part."""

    url: str
    protocol: str  # oip-v2 | dicomweb | json-job
    timeout_s: float = DEFAULT_TIMEOUT_S
    allow_identifiable: bool = False
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retries: int = 2
    auth: RestAuthSpec | None = None
    tls: RestTlsSpec = RestTlsSpec()
    oip: OipSpec | None = None
    dicomweb: DicomwebSpec | None = None
    json_job: JsonJobSpec | None = None


@dataclass(frozen=True)
class VendorPackage:
    """A validated vendor package; ``root`` is the (extracted) package directory."""

    root: Path
    source: Path
    vendor: str
    product: str
    version: str
    interface: str
    native_operating_point: float  # as vendor.yaml writes it, on the score_range scale
    score_range: tuple[float, float]
    onnx: OnnxSpec | None
    dicom: DicomSpec | None
    rest: RestSpec | None
    package_digest: str
    model_digests: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"{self.vendor} {self.product} {self.version}"

    @property
    def section(self) -> OnnxSpec | DicomSpec | RestSpec:
        """The active interface's section (``onnx``, ``dicom`` or ``rest``)."""
        spec = {"onnx": self.onnx, "dicom": self.dicom, "rest": self.rest}.get(self.interface)
        if spec is None:
            raise VendorPackageError(
                f"{self.source}: interface {self.interface} needs a {self.interface!r} section; add it"
            )
        return spec

    @property
    def timeout_s(self) -> float:
        """The per-exam deadline of the active interface (``<interface>.timeout_s``), seconds."""
        return float(self.section.timeout_s)

    def map_score(self, raw: float) -> float:
        """Map a model score linearly from ``score_range`` onto [0, 1]; never clipped."""
        lo, hi = self.score_range
        return (float(raw) - lo) / (hi - lo)

    @property
    def operating_point(self) -> float:
        """The recall threshold on the mapped [0, 1] scores: ``operating_point`` mapped with
        ``score_range``, exactly as the model's scores are."""
        return self.map_score(self.native_operating_point)


# --------------------------------------------------------------------------- schema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# --------------------------------------------------------------------------- files


_EXTRACTED: list[Path] = []


@atexit.register
def _cleanup() -> None:
    for d in _EXTRACTED:
        shutil.rmtree(d, ignore_errors=True)


def _check_member_name(zpath: Path, name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise VendorPackageError(
            f"{zpath}: member {name!r} has an absolute path; rebuild the zip with relative paths"
        )
    if ".." in p.parts:
        raise VendorPackageError(
            f"{zpath}: member {name!r} leaves the package ('..'); rebuild the zip without it"
        )
    if "\0" in name or any(len(part.encode("utf-8", "replace")) > NAME_MAX for part in p.parts):
        raise VendorPackageError(
            f"{zpath}: member {name[:80]!r} has a name no file system can hold; rebuild the zip"
        )
    return p


ZIP_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflated",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


def _check_members(zpath: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse, before extracting, members that cannot be extracted as one package tree:
    encrypted ones, unknown compression methods, duplicate names, a file where another member
    needs a directory, a file member without a name."""
    files: set[PurePosixPath] = set()
    dirs: set[PurePosixPath] = set()
    for info in infos:
        rel = _check_member_name(zpath, info.filename)
        if info.flag_bits & 0x1:
            raise VendorPackageError(
                f"{zpath}: member {info.filename!r} is encrypted; store the package without a password"
            )
        if info.compress_type not in ZIP_METHODS:
            raise VendorPackageError(
                f"{zpath}: member {info.filename!r} uses compression method {info.compress_type}, "
                f"which cannot be read; rebuild the zip ({', '.join(ZIP_METHODS.values())})"
            )
        dirs.update(rel.parents)
        if info.is_dir():
            dirs.add(rel)
            continue
        if not rel.parts:
            raise VendorPackageError(
                f"{zpath}: a file member has no name ({info.filename!r}); rebuild the zip"
            )
        if rel in files:
            raise VendorPackageError(
                f"{zpath}: member {info.filename!r} appears twice; rebuild the zip with one copy"
            )
        files.add(rel)
    clash = sorted(files & dirs)
    if clash:
        raise VendorPackageError(
            f"{zpath}: {clash[0].as_posix()!r} is both a file and a directory in the zip; rebuild it"
        )


def _read_member(zpath: Path, info: zipfile.ZipInfo, src: Any) -> bytes:
    """The next block of a member; a bad CRC or corrupt/truncated data is a VendorPackageError."""
    try:
        return src.read(1 << 20)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
        # OSError: bz2's "Invalid data stream" (nothing is written to disk while reading)
        raise VendorPackageError(
            f"{zpath}: member {info.filename!r} is damaged ({str(exc)[:80]}); rebuild the zip"
        ) from None


def extract_zip(zpath: Path) -> Path:
    """Safely extract a package zip into a private temporary directory and return it."""
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as exc:
        raise VendorPackageError(
            f"{zpath}: not a readable zip ({exc}); pass a package directory or a valid .zip"
        ) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise VendorPackageError(
                f"{zpath}: {len(infos)} members, more than {MAX_MEMBERS}; a vendor package needs only a few files"
            )
        _check_members(zpath, infos)
        declared = 0
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise VendorPackageError(
                    f"{zpath}: member {info.filename!r} is a symlink; store the file itself"
                )
            declared += info.file_size
        if declared > MAX_TOTAL_BYTES:
            raise VendorPackageError(
                f"{zpath}: {declared} bytes uncompressed, more than {MAX_TOTAL_BYTES}; package too large"
            )
        dest = Path(tempfile.mkdtemp(prefix="mammocert-vendor-"))
        _EXTRACTED.append(dest)
        written = 0
        for info in infos:
            rel = _check_member_name(zpath, info.filename)
            target = dest.joinpath(*rel.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                src = zf.open(info)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:  # header mismatch, truncated
                raise VendorPackageError(
                    f"{zpath}: member {info.filename!r} is damaged ({str(exc)[:80]}); rebuild the zip"
                ) from None
            with src, open(target, "wb") as out:
                while block := _read_member(zpath, info, src):
                    written += len(block)
                    if written > MAX_TOTAL_BYTES:
                        raise VendorPackageError(
                            f"{zpath}: expands past {MAX_TOTAL_BYTES} bytes; package too large"
                        )
                    out.write(block)
    # A zip whose single top-level folder holds vendor.yaml is accepted too.
    if not (dest / "vendor.yaml").is_file():
        subdirs = [p for p in dest.iterdir() if p.is_dir()]
        if (
            len(subdirs) == 1
            and (subdirs[0] / "vendor.yaml").is_file()
            and len(list(dest.iterdir())) == 1
        ):
            return subdirs[0]
    return dest


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _file_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file; refuses symlinks that leave the package."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            if p.is_symlink() and not _inside(root, p):
                raise VendorPackageError(
                    f"{p}: symlink points outside the package ({os.readlink(p)}); copy the file into the package"
                )
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_file():
                out[p.relative_to(root).as_posix()] = sha256_file(p)
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- onnx


def _dims(value_info: Any) -> list[int | str | None]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _walk_graphs(graph: Any):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _walk_graphs(attr.g)
            for g in attr.graphs:
                yield from _walk_graphs(g)


def _all_tensors(model: Any):
    for g in _walk_graphs(model.graph):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def check_onnx(
    root: Path,
    rel_model: str,
    spec_input: OnnxInputSpec,
    score: str,
    heatmap: str | None,
    source: str,
    breast_scores: str | None = None,
) -> tuple[OnnxGraphFacts, dict[str, str]]:
    """Static safety and interface checks of the model; returns graph facts and artifact digests."""
    import onnx

    path = root / rel_model
    if path.is_symlink() and not _inside(root, path):
        raise VendorPackageError(
            f"{source}: onnx.model {rel_model!r} is a symlink out of the package; copy the model in"
        )
    if not path.is_file() or not _inside(root, path):
        raise VendorPackageError(
            f"{source}: onnx.model {rel_model!r} not found in the package; put the model file next to vendor.yaml"
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise VendorPackageError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); export the model again"
        ) from None
    digests = {rel_model: sha256_file(path)}
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if not location:
            raise VendorPackageError(
                f"{path}: tensor {tensor.name!r} has external data without a location; re-save the model"
            )
        target = path.parent / location
        if (
            Path(location).is_absolute()
            or ".." in PurePosixPath(location.replace("\\", "/")).parts
            or not _inside(root, target)
        ):
            raise VendorPackageError(
                f"{path}: tensor {tensor.name!r} external data {location!r} is outside the package; keep weights inside it"
            )
        if not target.is_file():
            raise VendorPackageError(
                f"{path}: tensor {tensor.name!r} external data {location!r} is missing; add the file to the package"
            )
        rel = target.resolve().relative_to(root.resolve()).as_posix()
        digests.setdefault(rel, sha256_file(target))
    for imp in model.opset_import:
        if imp.domain not in STANDARD_DOMAINS:
            raise VendorPackageError(
                f"{path}: custom operator domain {imp.domain!r} in opset_import; only standard ONNX operators are allowed"
            )
    for g in _walk_graphs(model.graph):
        for node in g.node:
            if node.domain not in STANDARD_DOMAINS:
                raise VendorPackageError(
                    f"{path}: node {node.name or node.op_type!r} uses custom operator domain {node.domain!r}; only standard ONNX operators are allowed"
                )
    init_names = {t.name for t in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in init_names}
    outputs = {o.name: o for o in model.graph.output}
    name = spec_input.name
    if name not in inputs or len(inputs) != 1:
        raise VendorPackageError(
            f"{source}: onnx.input.name {name!r} does not match the model's input(s) {sorted(inputs)}; set it to the graph's one input name"
        )
    vi = inputs[name]
    if vi.type.tensor_type.elem_type != FLOAT32:
        raise VendorPackageError(
            f"{path}: input {name!r} is not float32; export the model with a float32 input"
        )
    dims = _dims(vi)
    if len(dims) != 4:
        raise VendorPackageError(
            f"{path}: input {name!r} has rank {len(dims)}; expected 4 (N, C, H, W)"
        )
    n, c, h, w = dims
    if isinstance(c, int) and c != spec_input.channels:
        raise VendorPackageError(
            f"{source}: onnx.input.unit {spec_input.unit!r} gives {spec_input.channels} channel(s) but the model input has C={c}; fix unit or the model"
        )
    for label, got, want in (("height", h, spec_input.height), ("width", w, spec_input.width)):
        if isinstance(got, int) and got != want:
            raise VendorPackageError(
                f"{source}: onnx.input.{label} is {want} but the model input has {got}; make them equal"
            )
    if isinstance(n, int) and n != 1:
        raise VendorPackageError(
            f"{path}: input {name!r} has a fixed batch size {n}; use 1 or a dynamic batch dimension"
        )
    for key, out_name in (("score", score), ("heatmap", heatmap), ("breast_scores", breast_scores)):
        if out_name is None:
            continue
        if out_name not in outputs:
            raise VendorPackageError(
                f"{source}: onnx.output.{key} {out_name!r} is not a model output {sorted(outputs)}; use the graph's output name"
            )
        if outputs[out_name].type.tensor_type.elem_type != FLOAT32:
            raise VendorPackageError(
                f"{path}: output {out_name!r} is not float32; export it as float32"
            )
    sdims = _dims(outputs[score])
    if len(sdims) not in (1, 2) or (
        len(sdims) == 2 and isinstance(sdims[1], int) and sdims[1] != 1
    ):
        raise VendorPackageError(
            f"{path}: score output {score!r} has shape {sdims}; expected (N,) or (N, 1)"
        )
    if breast_scores is not None:
        bd = _dims(outputs[breast_scores])
        if spec_input.unit != "exam":
            raise VendorPackageError(
                f"{source}: onnx.output.breast_scores is for unit exam only; other units give breast scores by aggregation"
            )
        if len(bd) != 2 or (isinstance(bd[1], int) and bd[1] != 2):
            raise VendorPackageError(
                f"{path}: breast_scores output {breast_scores!r} has shape {bd}; expected (N, 2) as [L, R]"
            )
    heat_c: int | None = None
    if heatmap is not None:
        hd = _dims(outputs[heatmap])
        if len(hd) != 4:
            raise VendorPackageError(
                f"{path}: heatmap output {heatmap!r} has rank {len(hd)}; expected 4 (N, C, h, w)"
            )
        if isinstance(hd[1], int):
            if hd[1] not in (1, spec_input.channels):
                raise VendorPackageError(
                    f"{path}: heatmap output {heatmap!r} has {hd[1]} channels; expected 1 or {spec_input.channels}"
                )
            heat_c = hd[1]
    return OnnxGraphFacts(batch_dynamic=not isinstance(n, int), heatmap_channels=heat_c), digests


# --------------------------------------------------------------------------- load


def _pair(v: Any) -> tuple[float, float]:
    return (float(v[0]), float(v[1]))


MAX_SCALE_MAGNITUDE = 1e9  # no model's score or input scale is larger


def _range(value: Any, key: str, source: str) -> tuple[float, float]:
    """A ``[low, high]`` scale (``score_range``, ``onnx.input.scale``, a DICOM score scale):
    finite, ordered, within +/-1e9 and wide enough to map onto [0, 1] without losing every
    digit. ``[-1e308, 1e308]`` would map every score to 0.0."""
    lo, hi = _pair(value)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise VendorPackageError(
            f"{source}: {key} [{lo}, {hi}] must be finite numbers; give the model's real range, e.g. [0.0, 1.0]"
        )
    if not lo < hi:
        raise VendorPackageError(f"{source}: {key} [{lo}, {hi}] must have low < high")
    if max(abs(lo), abs(hi)) > MAX_SCALE_MAGNITUDE:
        raise VendorPackageError(
            f"{source}: {key} [{lo}, {hi}] is beyond +/-{MAX_SCALE_MAGNITUDE:g}; give the "
            "model's real range, e.g. [0.0, 1.0] or [0, 100]"
        )
    if (hi - lo) < 1e-9 * max(1.0, abs(lo), abs(hi)):
        raise VendorPackageError(
            f"{source}: {key} [{lo}, {hi}] is too narrow to map scores onto [0, 1]; give the model's real range"
        )
    return lo, hi


def _timeout(section: dict[str, Any], name: str, source: str) -> float:
    """``<name>.timeout_s``: a finite number of seconds > 0 (default ``DEFAULT_TIMEOUT_S``)."""
    value = section.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VendorPackageError(
            f"{source}: {name}.timeout_s: expected a number of seconds, got {value!r}; e.g. 300"
        )
    if not (math.isfinite(value) and value > 0):
        raise VendorPackageError(
            f"{source}: {name}.timeout_s: {value!r} must be a finite number of seconds > 0; e.g. 300"
        )
    return float(value)


def _batch_size(section: dict[str, Any], facts: OnnxGraphFacts | None, source: str) -> int:
    """``onnx.batch_size`` (schema: an integer in [1, 256]); above 1 the graph's batch dimension
    must be dynamic, since several exams then share one input tensor."""
    size = int(section.get("batch_size", 1))
    if size > 1 and facts is not None and not facts.batch_dynamic:
        raise VendorPackageError(
            f"{source}: onnx.batch_size {size} needs a dynamic batch dimension, but the model "
            "input's batch size is fixed at 1; export the model with a dynamic N or set "
            "batch_size: 1"
        )
    return size


def _tensor_input(i: dict[str, Any], key: str, source: str) -> OnnxInputSpec:
    """``onnx.input`` or ``rest.oip.input``: how exams become the model's input tensor."""
    return OnnxInputSpec(
        i["unit"],
        i["name"],
        int(i["height"]),
        int(i["width"]),
        i.get("orientation", "chest_wall_left"),
        i.get("pixels", "presentation"),
        _range(i.get("scale", [0.0, 1.0]), f"{key}.scale", source),
        i.get("resize", "fit"),
    )


def _sr_score(score: dict[str, Any], key: str, source: str) -> tuple[tuple[str, str], Any]:
    """A result report's score NUM: (code, scheme) and its scale (None: the package's range)."""
    code = (str(score.get("code", "111047")), str(score.get("scheme", "DCM")))
    scale = _range(score["scale"], f"{key}.scale", source) if "scale" in score else None
    return code, scale


def _seconds(section: dict[str, Any], key: str, default: float, where: str, source: str) -> float:
    """An optional positive, finite number of seconds."""
    value = section.get(key, default)
    if not (math.isfinite(value) and value > 0):
        raise VendorPackageError(
            f"{source}: {where}.{key}: {value!r} must be a finite number of seconds > 0"
        )
    return float(value)


def _local_file(value: str | None, key: str, root: Path, source: str) -> Path | None:
    """A TLS file: absolute (a hospital's PKI lives outside the package) or inside the package."""
    if value is None:
        return None
    p = Path(value)
    if not p.is_absolute():
        p = root / p
        if not p.resolve().is_relative_to(root.resolve()):
            raise VendorPackageError(
                f"{source}: {key} {value!r} leaves the package; give an absolute path or one inside it"
            )
    if not p.is_file():
        raise VendorPackageError(f"{source}: {key}: no such file {str(p)!r}; fix the path")
    return p


def _check_jmespath(section: Any, key: str, source: str) -> None:
    """Every string under ``rest.json_job.result`` except the state lists compiles as JMESPath."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    if isinstance(section, dict):
        for k, v in section.items():
            if k not in ("pending", "failed", "rejected"):
                _check_jmespath(v, f"{key}.{k}", source)
    elif isinstance(section, str):
        try:
            jmespath.compile(section)
        except JMESPathError as exc:
            first = str(exc).splitlines()[0]
            raise VendorPackageError(
                f"{source}: {key}: {section!r} is not a JMESPath expression ({first}); see jmespath.org"
            ) from None


def _rest_spec(r: dict[str, Any], root: Path, source: str) -> RestSpec:
    """The ``rest`` section (already schema-valid)."""
    auth = None
    if "auth" in r:
        a = r["auth"]
        auth = RestAuthSpec(
            a["scheme"], a.get("token_env"), a.get("username_env"), a.get("password_env")
        )
    t = r.get("tls", {})
    tls = RestTlsSpec(
        _local_file(t.get("ca_bundle"), "rest.tls.ca_bundle", root, source),
        _local_file(t.get("client_cert"), "rest.tls.client_cert", root, source),
        _local_file(t.get("client_key"), "rest.tls.client_key", root, source),
        bool(t.get("verify", True)),
    )
    oip = dicomweb = json_job = None
    if "oip" in r:
        o = r["oip"]
        out = o["output"]
        oip = OipSpec(
            o["model"],
            _tensor_input(o["input"], "rest.oip.input", source),
            OipOutputSpec(
                out["score"], out["study_uid"], out.get("heatmap"), out.get("breast_scores")
            ),
            o.get("version"),
            o.get("encoding", "auto"),
            o.get("study_uid_input", "study_uid"),
            o.get("aggregate", "max"),
        )
    if "dicomweb" in r:
        w = r["dicomweb"]
        code, scale = _sr_score(
            w["results"].get("score", {}), "rest.dicomweb.results.score", source
        )
        dicomweb = DicomwebSpec(
            w["results"]["format"],
            code,
            scale,
            _seconds(w, "poll_interval_s", 0.5, "rest.dicomweb", source),
            bool(w.get("workitem", False)),
            w.get("task_manager_url"),
        )
    if "json_job" in r:
        j = r["json_job"]
        res = j["result"]
        f = res.get("finding")
        _check_jmespath(res, "rest.json_job.result", source)
        json_job = JsonJobSpec(
            j["submit"]["path"],
            JsonJobResultSpec(
                res["exam_score"],
                res.get("state"),
                tuple(res.get("pending", ("queued", "running", "pending"))),
                tuple(res.get("failed", ("failed", "error"))),
                tuple(res.get("rejected", ("rejected",))),
                dict(res.get("breast_scores", {})),
                res.get("study_uid"),
                res.get("findings"),
                JsonJobFindingSpec(
                    f["sop_instance_uid"], f["x"], f["y"], f["score"], f.get("laterality")
                )
                if f
                else None,
            ),
            j["submit"].get("body", "multipart"),
            _seconds(j, "poll_interval_s", 0.5, "rest.json_job", source),
        )
    if "@" in r["url"].split("://", 1)[1].split("/", 1)[0]:
        raise VendorPackageError(
            f"{source}: rest.url carries credentials; remove them and use rest.auth with an "
            "environment variable"
        )
    return RestSpec(
        r["url"],
        r["protocol"],
        _timeout(r, "rest", source),
        bool(r.get("allow_identifiable", False)),
        _seconds(r, "connect_timeout_s", 10.0, "rest", source),
        _seconds(r, "read_timeout_s", 60.0, "rest", source),
        int(r.get("retries", 2)),
        auth,
        tls,
        oip,
        dicomweb,
        json_job,
    )


def load_vendor_package(path: Path | str) -> VendorPackage:
    """Load and validate a vendor package from a directory or a .zip (see module docstring)."""
    src = Path(path)
    if src.is_file() and zipfile.is_zipfile(src):
        root = extract_zip(src)
    elif src.is_dir():
        root = src
    elif src.exists():
        raise VendorPackageError(
            f"{src}: neither a directory nor a .zip; pass the package directory or its .zip"
        )
    else:
        raise VendorPackageError(f"{src}: vendor package not found; check the --vendor path")
    yml = root / "vendor.yaml"
    source = str(src / "vendor.yaml") if src.is_dir() else f"{src}!vendor.yaml"
    if yml.is_symlink():
        raise VendorPackageError(f"{source}: vendor.yaml is a symlink; store the file itself")
    if not yml.is_file():
        raise VendorPackageError(
            f"{source}: no vendor.yaml at the package's top level; add one (see docs/contracts.md §3.2)"
        )
    data = yamlio.safe_load(yml.read_bytes(), source, VendorPackageError)
    if not isinstance(data, dict):
        raise VendorPackageError(
            f"{source}: top level must be a mapping of keys (schema, vendor, product, ...)"
        )
    errors = list(_validator().iter_errors(data))
    if errors:
        raise VendorPackageError(schema_message(best_error(errors), source))
    lo, hi = _range(data["score_range"], "score_range", source)
    op = data["operating_point"]
    if not math.isfinite(op):
        raise VendorPackageError(
            f"{source}: operating_point {op} must be a finite number, e.g. 0.5"
        )
    if not lo <= op <= hi:
        raise VendorPackageError(
            f"{source}: operating_point {op:g} is outside score_range [{lo:g}, {hi:g}]; give the "
            "threshold on the model's own scale, as its scores are (e.g. 60 for [0, 100])"
        )
    files = _file_hashes(root)
    onnx_spec = dicom_spec = rest_spec = None
    model_digests: dict[str, str] = {}
    if "onnx" in data:
        o = data["onnx"]
        inp = _tensor_input(o["input"], "onnx.input", source)
        facts, artifact_digests = (None, {})
        if data["interface"] == "onnx":
            facts, artifact_digests = check_onnx(
                root,
                o["model"],
                inp,
                o["output"]["score"],
                o["output"].get("heatmap"),
                source,
                o["output"].get("breast_scores"),
            )
        onnx_spec = OnnxSpec(
            o["model"],
            inp,
            o["output"]["score"],
            o["output"].get("heatmap"),
            o.get("aggregate", "max"),
            facts or OnnxGraphFacts(False, None),
            o["output"].get("breast_scores"),
            _timeout(o, "onnx", source),
            _batch_size(o, facts, source),
        )
        model_digests.update(artifact_digests)
    if "dicom" in data:
        d = data["dicom"]
        r = d["results"]
        code, scale = _sr_score(r.get("score", {}), "dicom.results.score", source)
        pacs = r.get("pacs")
        dicom_spec = DicomSpec(
            d["ae_title"],
            d["host"],
            int(d["port"]),
            d.get("calling_ae_title", "MAMMOCERT"),
            DicomResultsSpec(
                r["format"],
                r.get("from", "push"),
                r.get("listen_port"),
                code,
                scale,
                PacsSpec(pacs["ae_title"], pacs["host"], int(pacs["port"])) if pacs else None,
            ),
            _timeout(d, "dicom", source),
            bool(d.get("allow_identifiable", False)),
        )
    if "rest" in data:
        rest_spec = _rest_spec(data["rest"], root, source)
    model_digests["vendor.yaml"] = files.get("vendor.yaml", sha256_file(yml))
    package_digest = "sha256:" + sha256_bytes(canonical_json({"files": files}))
    return VendorPackage(
        root,
        src,
        str(data["vendor"]),
        str(data["product"]),
        str(data["version"]),
        data["interface"],
        float(data["operating_point"]),
        (lo, hi),
        onnx_spec,
        dicom_spec,
        rest_spec,
        package_digest,
        dict(sorted(model_digests.items())),
        data,
    )
