"""The reference-set manifest (`docs/contracts.md` §3.3): typed records, validation, digest, verification."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import ManifestError, VerificationError
from harness.jsonutil import canonical_json, sha256_bytes, sha256_file

SCHEMA_ID = "mammocert/reference-set/v1"
TRUTHS = ("screen_detected", "interval", "benign", "normal")
VIEWS = ("CC", "MLO")
LATERALITIES = ("L", "R")
# Channel order of the contract for an exam unit.
EXAM_VIEW_ORDER = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


@dataclass(frozen=True)
class ImageRef:
    """One stored DICOM image of an exam."""

    file: str
    laterality: str
    view: str
    sha256: str


@dataclass(frozen=True)
class Mark:
    """A lesion's box on one image: pixel columns/rows [x0, y0, x1, y1] of the stored image."""

    file: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Lesion:
    """A ground-truth lesion with its marks on the views where it is visible."""

    laterality: str
    type: str
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class Exam:
    """One screening exam with its ground truth, attributes and original reads."""

    exam_id: str
    label: int
    truth: str
    attributes: Mapping[str, Any]
    readers: Mapping[str, int]
    images: tuple[ImageRef, ...]
    lesions: tuple[Lesion, ...]

    @property
    def woman_id(self) -> str:
        """The independent unit for cluster statistics (attribute ``woman_id``, else the exam)."""
        return str(self.attributes.get("woman_id", self.exam_id))

    def digest(self) -> str:
        """Digest of this exam's record (ground truth and every file hash): the journal's case key."""
        return sha256_bytes(canonical_json(exam_to_dict(self)))


@dataclass(frozen=True)
class Manifest:
    """A loaded, validated reference set."""

    root: Path
    id: str
    version: str
    description: str
    exams: tuple[Exam, ...]
    digest: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def exam(self, exam_id: str) -> Exam:
        for e in self.exams:
            if e.exam_id == exam_id:
                return e
        raise KeyError(exam_id)

    def path(self, image: ImageRef) -> Path:
        return self.root / image.file


def compute_digest(manifest: Mapping[str, Any]) -> str:
    """``sha256:`` + hex SHA-256 of the canonical JSON of the manifest without ``digest``."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return "sha256:" + sha256_bytes(canonical_json(body))


def exam_to_dict(exam: Exam) -> dict[str, Any]:
    return {
        "exam_id": exam.exam_id,
        "label": exam.label,
        "truth": exam.truth,
        "attributes": dict(exam.attributes),
        "readers": dict(exam.readers),
        "images": [
            {"file": i.file, "laterality": i.laterality, "view": i.view, "sha256": i.sha256}
            for i in exam.images
        ],
        "lesions": [
            {
                "laterality": les.laterality,
                "type": les.type,
                "marks": [{"file": m.file, "box": list(m.box)} for m in les.marks],
            }
            for les in exam.lesions
        ],
    }


def _fail(where: str, problem: str, fix: str) -> ManifestError:
    return ManifestError(f"{where}: {problem}; {fix}")


def _safe_relpath(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(
            where,
            f"file must be a non-empty relative path, got {value!r}",
            "use a path like 'E0001/LCC.dcm'",
        )
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or "\\" in value:
        raise _fail(
            where,
            f"file {value!r} leaves the reference set",
            "use a relative path inside the set directory",
        )
    return value


def _list(record: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """``record[key]`` as a list (absent or null: empty); anything else is a ManifestError."""
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"{where}.{key}", f"expected a list, got {type(value).__name__}", "use [...]")
    return value


def parse_manifest(data: Mapping[str, Any], root: Path, source: str = "manifest.json") -> Manifest:
    """Validate a manifest dict and build the typed records; every error names the field."""
    if not isinstance(data, Mapping):
        raise _fail(source, "top level is not a JSON object", "write the manifest as an object")
    if data.get("schema") != SCHEMA_ID:
        raise _fail(
            f"{source}: schema",
            f"expected {SCHEMA_ID!r}, got {data.get('schema')!r}",
            f'set "schema": "{SCHEMA_ID}"',
        )
    for key in ("id", "version"):
        if not isinstance(data.get(key), str) or not data.get(key):
            raise _fail(
                f"{source}: {key}", "missing or not a string", f'set "{key}" to a non-empty string'
            )
    exams_raw = data.get("exams")
    if not isinstance(exams_raw, list) or not exams_raw:
        raise _fail(f"{source}: exams", "missing or empty", "list at least one exam")
    exams: list[Exam] = []
    seen: set[str] = set()
    for n, e in enumerate(exams_raw):
        where = f"{source}: exams[{n}]"
        if not isinstance(e, Mapping):
            raise _fail(where, "not an object", "each exam is a JSON object")
        eid = e.get("exam_id")
        if not isinstance(eid, str) or not eid:
            raise _fail(f"{where}.exam_id", "missing", "give every exam a unique string exam_id")
        if eid in seen:
            raise _fail(f"{where}.exam_id", f"duplicate exam_id {eid!r}", "exam ids must be unique")
        seen.add(eid)
        where = f"{source}: exam {eid if eid.isprintable() else repr(eid)}"
        label = e.get("label")
        if label not in (0, 1) or isinstance(label, bool):
            raise _fail(
                f"{where}.label", f"must be 0 or 1, got {label!r}", "1 = cancer, 0 = benign/normal"
            )
        truth = e.get("truth")
        if truth not in TRUTHS:
            raise _fail(
                f"{where}.truth",
                f"must be one of {', '.join(TRUTHS)}, got {truth!r}",
                "fix the truth value",
            )
        if (truth in ("screen_detected", "interval")) != (label == 1):
            raise _fail(
                f"{where}.truth",
                f"truth {truth!r} contradicts label {label}",
                "cancers have label 1",
            )
        attrs = e.get("attributes", {})
        if not isinstance(attrs, Mapping):
            raise _fail(f"{where}.attributes", "not an object", "attributes is a JSON object")
        readers = e.get("readers", {})
        if not isinstance(readers, Mapping) or any(
            v not in (0, 1) or isinstance(v, bool) for v in readers.values()
        ):
            raise _fail(
                f"{where}.readers", "must map reader names to 0/1", "1 = recall, 0 = no recall"
            )
        images: list[ImageRef] = []
        files: set[str] = set()
        for k, im in enumerate(_list(e, "images", where)):
            iw = f"{where}.images[{k}]"
            if not isinstance(im, Mapping):
                raise _fail(iw, "not an object", "each image is an object")
            f = _safe_relpath(f"{iw}.file", im.get("file"))
            if im.get("laterality") not in LATERALITIES:
                raise _fail(f"{iw}.laterality", f"got {im.get('laterality')!r}", "use 'L' or 'R'")
            if im.get("view") not in VIEWS:
                raise _fail(f"{iw}.view", f"got {im.get('view')!r}", "use 'CC' or 'MLO'")
            sha = im.get("sha256")
            if (
                not isinstance(sha, str)
                or len(sha) != 64
                or any(c not in "0123456789abcdef" for c in sha)
            ):
                raise _fail(
                    f"{iw}.sha256",
                    "not 64 lowercase hex digits",
                    "run `mammocert cases build` or hash the file",
                )
            files.add(f)
            images.append(ImageRef(f, im["laterality"], im["view"], sha))
        if not images:
            raise _fail(f"{where}.images", "no images", "list the exam's DICOM files")
        lesions: list[Lesion] = []
        for k, les in enumerate(_list(e, "lesions", where)):
            lw = f"{where}.lesions[{k}]"
            if not isinstance(les, Mapping) or les.get("laterality") not in LATERALITIES:
                raise _fail(
                    f"{lw}.laterality", "missing or not 'L'/'R'", "give each lesion its breast side"
                )
            marks: list[Mark] = []
            for j, m in enumerate(_list(les, "marks", lw)):
                mw = f"{lw}.marks[{j}]"
                mf = _safe_relpath(f"{mw}.file", m.get("file") if isinstance(m, Mapping) else None)
                if mf not in files:
                    raise _fail(
                        f"{mw}.file",
                        f"{mf!r} is not one of the exam's images",
                        "mark an image listed in images",
                    )
                box = m.get("box")
                if (
                    not isinstance(box, list)
                    or len(box) != 4
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
                    or box[0] >= box[2]
                    or box[1] >= box[3]
                ):
                    raise _fail(
                        f"{mw}.box", f"got {box!r}", "use [x0, y0, x1, y1] with x0 < x1 and y0 < y1"
                    )
                marks.append(Mark(mf, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
            lesions.append(Lesion(les["laterality"], str(les.get("type", "unknown")), tuple(marks)))
        exams.append(
            Exam(
                eid,
                int(label),
                truth,
                dict(attrs),
                {k: int(v) for k, v in readers.items()},
                tuple(images),
                tuple(lesions),
            )
        )
    digest = compute_digest(data)
    stated = data.get("digest")
    if stated is not None and stated != digest:
        raise VerificationError(
            f"{source}: digest {stated} does not match the manifest content ({digest}); "
            "the manifest was edited after it was sealed: rebuild it or re-seal it deliberately"
        )
    extra = {
        k: v
        for k, v in data.items()
        if k not in ("schema", "id", "version", "description", "exams", "digest")
    }
    return Manifest(
        root,
        data["id"],
        data["version"],
        str(data.get("description", "")),
        tuple(exams),
        digest,
        extra,
    )


def load_manifest(directory: Path | str) -> Manifest:
    """Load and validate ``DIR/manifest.json`` (content digest checked; file hashes are not)."""
    root = Path(directory)
    path = root / "manifest.json"
    if not path.is_file():
        raise ManifestError(
            f"{path}: no manifest.json; point --cases at a reference-set directory (build one with `mammocert cases build`)"
        )
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); write the manifest as UTF-8 JSON"
        ) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); fix the syntax"
        ) from None
    except RecursionError:
        raise ManifestError(f"{path}: JSON nested too deeply; not a manifest") from None
    return parse_manifest(data, root, str(path))


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the manifest with its ``digest`` set (key order: digest last)."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    body["digest"] = compute_digest(body)
    return body


def write_manifest(directory: Path, manifest: dict[str, Any]) -> str:
    """Seal and write ``manifest.json``; returns the digest."""
    sealed = seal(manifest)
    (Path(directory) / "manifest.json").write_text(
        json.dumps(sealed, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8"
    )
    return sealed["digest"]


def verify_set(directory: Path | str) -> Manifest:
    """Re-hash every file against the manifest; raise VerificationError naming the first bad file."""
    manifest = load_manifest(directory)
    for exam in manifest.exams:
        for image in exam.images:
            p = manifest.path(image)
            if not p.is_file():
                raise VerificationError(
                    f"{p}: missing (listed for exam {exam.exam_id}); restore the file or rebuild the set"
                )
            if sha256_file(p) != image.sha256:
                raise VerificationError(
                    f"{p}: sha256 differs from the manifest (exam {exam.exam_id}); the file was changed"
                )
    return manifest
