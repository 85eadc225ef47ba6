"""Real reference sets: ``mammocert cases import --dicom DIR --labels FILE.csv [...] --map MAP.yaml
--out DIR [--deidentify [--deid-key FILE]]``.

A national body's sequestered set, or a region's own, arrives as a folder of DICOM files and a
labels table. The import map (``reference_cases/maps/*.yaml``, schema
``importmap.schema.json``, docs/contracts.md §3.3) says how the table's rows find their images,
which rule turns a row into a truth, and which columns carry the attributes, the original reads
and the lesion boxes. The result is a reference set with the same contract as a built one
(``manifest.json`` with its digest; the images copied as ``EXAM/LCC.dcm`` ...), plus
``import-report.json``:

* **exams**: grouped by the map's ``exam_key`` (default Study Instance UID); laterality from
  Image Laterality, else Laterality, else the row's column; view from View Code Sequence, else
  View Position, else the row's column. An exam needs the four standard views (``views: four``)
  or is listed as excluded with why; so is an exam without a labels row, and a labels row that
  finds no image. Nothing is dropped silently.
* **de-identification** against the PS3.15 Basic Application Confidentiality Profile: per file,
  each attribute the profile would change that still has a value, and whether the suite's send
  gate (:func:`harness.dicomnet.deid.identification_problems`) passes. ``--deidentify`` applies
  the profile while copying (:func:`harness.dicomnet.deid.apply_basic_profile`: age kept as a
  5-year band, device identity kept, UIDs replaced by keyed UIDs, one Study Instance UID per
  exam), so the set can go to a remote vendor. ``--deid-key FILE`` reuses a key (32 bytes) and
  makes a repeated import byte-identical; without it a fresh key is drawn and not kept.

Truth never leaves the harness: it is in ``manifest.json`` only; what a vendor receives is the
images, pseudonymised again for every send (:mod:`harness.vendors.remote`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from harness import yamlio
from harness.cases.manifest import TRUTHS, write_manifest
from harness.errors import UsageError
from harness.fsio import make_dir
from harness.jsonutil import sha256_file
from harness.schemas import best_error, schema_message

MAP_SCHEMA = Path(__file__).with_name("importmap.schema.json")
MAP_SCHEMA_ID = "mammocert/import-map/v1"
SEVERITY = {t: i for i, t in enumerate(TRUTHS)}  # screen_detected first: the most serious wins
LATERALITY_WORDS = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}
STANDARD_VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


class ImportMapError(UsageError):
    """A map that cannot be used (exit 2)."""


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(MAP_SCHEMA.read_text(encoding="utf-8")))


def load_map(path: Path | str) -> dict[str, Any]:
    """An import map, schema-checked (one line naming the key on error)."""
    path = Path(path)
    if not path.is_file():
        raise ImportMapError(
            f"--map {path}: no such file; give a map YAML (shipped ones: reference_cases/maps/)"
        )
    data = yamlio.safe_load(path.read_bytes(), str(path), ImportMapError)
    if not isinstance(data, dict):
        raise ImportMapError(f"{path}: top level must be a mapping (schema, name, rows, ...)")
    errors = list(_validator().iter_errors(data))
    if errors:
        raise ImportMapError(
            schema_message(best_error(errors), str(path), "docs/contracts.md §3.3")
        )
    return data


def shipped_maps() -> dict[str, Path]:
    """The maps shipped with the suite, by name."""
    from harness.resources import IMPORT_MAPS

    return {p.stem: Path(p) for p in sorted(IMPORT_MAPS.iterdir()) if p.name.endswith(".yaml")}


def resolve_map(value: str) -> dict[str, Any]:
    """``--map``: a path, or the name of a shipped map (``vindr-mammo``, ``rsna-screening`` ...)."""
    maps = shipped_maps()
    if value in maps and not Path(value).exists():
        return load_map(maps[value])
    return load_map(value)


# ------------------------------------------------------------------------------- the images


@dataclass(frozen=True)
class DicomFile:
    """What the import needs from one DICOM file's header."""

    rel: str  # path under --dicom, POSIX
    keys: Mapping[str, str]  # match / exam_key sources -> value
    laterality: str | None
    view: str | None
    mammogram: bool
    header: Mapping[str, str] = field(default_factory=dict)  # attribute sources the map reads


def _source_value(ds: Any, rel: str, source: str) -> str:
    if source == "file_stem":
        name = rel.rsplit("/", 1)[-1]
        return name.split(".", 1)[0] if "." in name else name
    if source.startswith("path_part:"):
        parts = rel.split("/")
        k = int(source.split(":", 1)[1])
        return parts[k] if k < len(parts) - 1 else ""
    return str(ds.get(source, "") or "").strip()


def _laterality(ds: Any) -> str | None:
    for kw in ("ImageLaterality", "Laterality"):
        v = str(ds.get(kw, "") or "").strip().upper()
        if v in ("L", "R"):
            return v
    return None


def _view(ds: Any) -> str | None:
    from harness.codes import VIEW_OF_CODE_VALUE

    seq = ds.get("ViewCodeSequence")
    if seq:
        v = VIEW_OF_CODE_VALUE.get(str(seq[0].get("CodeValue", "")))
        if v:
            return v
    vp = str(ds.get("ViewPosition", "") or "").strip().upper()
    return vp or None


def scan(
    root: Path, sources: Sequence[str], header: Sequence[str]
) -> tuple[list[DicomFile], list[dict]]:
    """Every DICOM file under ``root`` (sorted), and the files that could not be read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from harness.codes import MAMMO_SOP_CLASSES

    files: list[DicomFile] = []
    unreadable: list[dict] = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames.sort()
        for name in sorted(names):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
                unreadable.append(
                    {"file": rel, "reason": f"not readable as DICOM ({type(exc).__name__})"}
                )
                continue
            mammo = (
                str(ds.get("SOPClassUID", "")) in MAMMO_SOP_CLASSES and ds.get("Modality") == "MG"
            )
            files.append(
                DicomFile(
                    rel,
                    {s: _source_value(ds, rel, s) for s in sources},
                    _laterality(ds),
                    _view(ds),
                    mammo,
                    {h: str(ds.get(h, "") or "").strip() for h in header},
                )
            )
    return files, unreadable


# ------------------------------------------------------------------------------- the labels


def read_labels(paths: Sequence[Path]) -> list[tuple[str, dict[str, str]]]:
    """Every row of every labels CSV as ``(where, row)``; where = ``file:line``."""
    rows: list[tuple[str, dict[str, str]]] = []
    for path in paths:
        if not path.is_file():
            raise UsageError(f"--labels {path}: no such file; give the labels CSV")
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"--labels {path}: not UTF-8 (byte {exc.start}); save the table as UTF-8 CSV"
            ) from None
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise UsageError(f"--labels {path}: no header row; the first line names the columns")
        for n, row in enumerate(reader, start=2):
            rows.append(
                (f"{path.name}:{n}", {k.strip(): (v or "").strip() for k, v in row.items() if k})
            )
    return rows


def _cols(spec: str | Sequence[str]) -> list[str]:
    return [spec] if isinstance(spec, str) else list(spec)


def _get(row: Mapping[str, str], spec: str | Sequence[str]) -> str | None:
    """The first of the columns present in the row with a value."""
    for c in _cols(spec):
        if row.get(c, "") != "":
            return row[c]
    return None


def _matches(rule: Mapping[str, Any], row: Mapping[str, str]) -> bool:
    v = _get(row, rule["column"])
    v = "" if v is None else v
    if "in" in rule and v not in rule["in"]:
        return False
    if "not_in" in rule and v in rule["not_in"]:
        return False
    return "in" in rule or "not_in" in rule or v != ""


def row_truth(m: Mapping[str, Any], row: Mapping[str, str]) -> str:
    for rule in m["truth"]["rules"]:
        if _matches(rule, row):
            return rule["truth"]
    return m["truth"]["otherwise"]


def _value(
    spec: Mapping[str, Any], rows: Sequence[Mapping[str, str]], header: Mapping[str, str]
) -> Any:
    raw = None
    if "column" in spec:
        for r in rows:
            raw = _get(r, spec["column"])
            if raw is not None:
                break
    else:
        raw = header.get(spec["dicom"]) or None
    if raw is None:
        return None
    if spec.get("values"):
        return spec["values"].get(raw)
    if spec.get("number"):
        digits = raw.rstrip("YyMmWwDd ") if raw[:1].isdigit() else raw
        try:
            return int(float(digits)) if float(digits).is_integer() else float(digits)
        except ValueError:
            return None
    return raw


# ------------------------------------------------------------------------------- the import

EXAM = "\0exam"  # DicomFile.keys entry holding the exam a file belongs to


def _extract(value: str | None, pattern: str | None) -> str | None:
    """``value``, or the first group of ``pattern`` searched in it (None if it does not match)."""
    if value is None or pattern is None:
        return value
    found = re.search(pattern, value)
    return (found.group(1) if found.groups() else found.group(0)) if found else None


def _with_exam(f: DicomFile, exam_key: str, pattern: str | None) -> DicomFile:
    exam = _extract(f.keys[exam_key], pattern) or f.keys[exam_key]
    return DicomFile(f.rel, {**f.keys, EXAM: exam}, f.laterality, f.view, f.mammogram, f.header)


@dataclass
class _Exam:
    key: str
    images: list[DicomFile] = field(default_factory=list)
    rows: list[tuple[str, dict[str, str], list[DicomFile]]] = field(default_factory=list)


def _header_keywords(m: Mapping[str, Any]) -> list[str]:
    out = ["Manufacturer"]
    for spec in (m.get("attributes") or {}).values():
        if "dicom" in spec:
            out.append(spec["dicom"])
    return sorted(set(out))


def _lesion_box(
    m: Mapping[str, Any], row: Mapping[str, str], dicom_root: Path, where: str
) -> tuple[list[float] | None, str | None]:
    spec = m.get("lesions") or {}
    if "box" in spec:
        vals = [_get(row, c) for c in spec["box"]]
        if all(v is None for v in vals):
            return None, None
        try:
            box = [float(v) for v in vals]  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None, f"{where}: lesion box {vals} is not four numbers"
        if not (box[0] < box[2] and box[1] < box[3]):
            return None, f"{where}: lesion box {box} is not x0 < x1, y0 < y1"
        return box, None
    if "mask" in spec:
        rel = _get(row, spec["mask"])
        if rel is None:
            return None, None
        return _mask_box(dicom_root / rel.strip().replace("\\", "/"), where)
    return None, None


def _mask_box(path: Path, where: str) -> tuple[list[float] | None, str | None]:
    import numpy as np
    import pydicom

    try:
        arr = pydicom.dcmread(path).pixel_array
    except Exception as exc:  # a missing or broken mask is reported, not fatal
        return None, f"{where}: ROI mask {path.name} unreadable ({type(exc).__name__})"
    rows, cols = np.nonzero(arr)
    if rows.size == 0:
        return None, f"{where}: ROI mask {path.name} is empty"
    return [
        float(cols.min()),
        float(rows.min()),
        float(cols.max() + 1),
        float(rows.max() + 1),
    ], None


def import_set(
    dicom_root: Path,
    label_paths: Sequence[Path],
    m: Mapping[str, Any],
    out: Path,
    *,
    set_id: str | None = None,
    version: str = "1.0.0",
    deidentify: bool = False,
    key: bytes | None = None,
) -> dict[str, Any]:
    """Import a set (see the module docstring); returns the import report."""
    if not dicom_root.is_dir():
        raise UsageError(f"--dicom {dicom_root}: not a directory; give the folder of DICOM files")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out}: exists and is not empty; choose a new directory")
    if out.resolve().is_relative_to(dicom_root.resolve()):
        raise UsageError(
            f"--out {out}: is inside --dicom {dicom_root}; choose a directory outside it"
        )
    match = m["match"]
    exam_key = m.get("exam_key", "StudyInstanceUID")
    files, unreadable = scan(dicom_root, sorted({match["dicom"], exam_key}), _header_keywords(m))
    rows = read_labels(label_paths)
    not_images = {
        (v or "").strip().replace("\\", "/")
        for _, row in rows
        for c in m.get("not_images", [])
        for v in [row.get(c)]
        if v
    }
    skipped: list[dict[str, str]] = [
        {"file": f.rel, "reason": "named by the labels as a mask or crop, not a screening image"}
        for f in files
        if f.rel in not_images
    ]
    files = [
        _with_exam(f, exam_key, m.get("exam_pattern")) for f in files if f.rel not in not_images
    ]
    exam_key = EXAM

    index: dict[str, list[DicomFile]] = defaultdict(list)
    for f in files:
        index[f.keys[match["dicom"]]].append(f)
    unmatched_rows: list[dict[str, str]] = []
    matched: list[tuple[str, dict[str, str], list[DicomFile]]] = []
    fill: dict[str, tuple[str | None, str | None]] = {}  # rel -> (laterality, view) from a row
    for where, row in rows:
        value = _extract(_get(row, match["column"]), match.get("pattern"))
        lat = view = None
        if "laterality" in match:
            lat = LATERALITY_WORDS.get((_get(row, match["laterality"]) or "").upper())
        if "view" in match:
            view = (_get(row, match["view"]) or "").upper() or None
        found = [
            f
            for f in index.get(value or "", [])
            if (lat is None or (f.laterality or lat) == lat)
            and (view is None or (f.view or view) == view)
        ]
        if not found:
            unmatched_rows.append(
                {
                    "row": where,
                    "reason": f"no DICOM image with {match['dicom']} = {value!r}"
                    + (f" on side {lat}" if lat else "")
                    + (f" view {view}" if view else ""),
                }
            )
            continue
        matched.append((where, row, found))
        for f in found:  # a row's side and view fill in what an image's header does not say
            if f.laterality is None or f.view is None:
                fill[f.rel] = (f.laterality or lat, f.view or view)
    if fill:
        files = [
            DicomFile(f.rel, f.keys, *fill[f.rel], f.mammogram, f.header) if f.rel in fill else f
            for f in files
        ]
        by_rel = {f.rel: f for f in files}
        matched = [(w, r, [by_rel[f.rel] for f in fs]) for w, r, fs in matched]
    exams: dict[str, _Exam] = {}
    for f in files:
        exams.setdefault(f.keys[exam_key], _Exam(f.keys[exam_key])).images.append(f)
    for where, row, fs in matched:
        for key_value in sorted({f.keys[exam_key] for f in fs}):
            exams[key_value].rows.append(
                (where, row, [f for f in fs if f.keys[exam_key] == key_value])
            )

    kept: list[tuple[_Exam, dict[tuple[str, str], DicomFile]]] = []
    excluded: list[dict[str, Any]] = []
    for ex in sorted(exams.values(), key=lambda e: e.key):
        if not ex.rows:
            excluded.append({"exam_key": ex.key, "reason": "no labels row matches its images"})
            continue
        views: dict[tuple[str, str], DicomFile] = {}
        for f in sorted(ex.images, key=lambda f: f.rel):
            if not f.mammogram:
                skipped.append({"file": f.rel, "reason": "not a mammogram (SOP Class / Modality)"})
            elif f.laterality is None or f.view not in ("CC", "MLO"):
                skipped.append(
                    {
                        "file": f.rel,
                        "reason": f"not a CC or MLO view with a side (laterality {f.laterality}, view {f.view})",
                    }
                )
            elif (f.laterality, f.view) in views:
                skipped.append(
                    {
                        "file": f.rel,
                        "reason": f"a second {f.laterality}{f.view}; the first file by name is used",
                    }
                )
            else:
                views[(f.laterality, f.view)] = f
        missing = [f"{lat}{v}" for lat, v in STANDARD_VIEWS if (lat, v) not in views]
        if not views:
            excluded.append({"exam_key": ex.key, "reason": "no CC or MLO mammogram"})
        elif missing and m.get("views", "four") == "four":
            excluded.append({"exam_key": ex.key, "reason": f"missing view(s) {', '.join(missing)}"})
        else:
            kept.append((ex, views))
    if not kept:
        reasons = Counter(e["reason"].split(" (")[0] for e in excluded) or Counter(
            {r["reason"]: 1 for r in unmatched_rows}
        )
        top = reasons.most_common(1)[0][0] if reasons else "no DICOM files found"
        raise UsageError(
            f"--dicom {dicom_root}: no exam could be imported (most common reason: {top}); "
            "check --map against the labels columns and the DICOM headers"
        )

    import pydicom

    from harness.dicomnet import deid

    make_dir(out, "--out")
    key = key if key is not None else secrets.token_bytes(32)
    width = max(4, len(str(len(kept))))
    manifest_exams: list[dict[str, Any]] = []
    deid_report: dict[str, Any] = {}
    header_completed: list[dict[str, str]] = []
    lesion_problems: list[str] = []
    for n, (ex, views) in enumerate(kept, start=1):
        exam_id = f"E{n:0{width}d}"
        truths = sorted({row_truth(m, row) for _, row, _ in ex.rows}, key=SEVERITY.__getitem__)
        truth = truths[0]
        row_dicts = [row for _, row, _ in ex.rows]
        header = views[sorted(views)[0]].header
        attrs = {}
        for name, spec in sorted((m.get("attributes") or {}).items()):
            v = _value(spec, row_dicts, header)
            if v is not None:
                attrs[name] = v
        readers = {}
        for name, spec in sorted((m.get("readers") or {}).items()):
            vals = [_get(r, spec["column"]) for r in row_dicts]
            if any(v is not None for v in vals):
                readers[name] = int(any(v in spec["recall"] for v in vals if v is not None))
        images = []
        written: dict[str, str] = {}
        for (lat, view), f in sorted(views.items()):
            rel = f"{exam_id}/{lat}{view}.dcm"
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = dicom_root / f.rel
            completed = f.rel in fill  # the labels said what the header did not
            if deidentify or completed:
                ds = pydicom.dcmread(src)
                if completed:
                    ds.ImageLaterality = lat
                    if not ds.get("ViewPosition") and not ds.get("ViewCodeSequence"):
                        ds.ViewPosition = view
                    header_completed.append({"file": rel, "source": f.rel, "set": f"{lat}{view}"})
                if deidentify:
                    deid.apply_basic_profile(ds, key, exam_id)
                    ds.StudyInstanceUID = deid.keyed_uid(key, f"exam:{ex.key}")  # one study
                ds.save_as(dest, enforce_file_format=True)
            else:
                shutil.copyfile(src, dest)
            written[f.rel] = rel
            check = pydicom.dcmread(dest, stop_before_pixels=True)
            deid_report[rel] = {
                "source": f.rel,
                "profile": [vars(x) for x in deid.profile_findings(check)],
                "send_gate": deid.identification_problems(check),
            }
            images.append(
                {"file": rel, "laterality": lat, "view": view, "sha256": sha256_file(dest)}
            )
        lesions = []
        spec = m.get("lesions") or {}
        for where, row, fs in ex.rows:
            if "when" in spec and not _matches(spec["when"], row):
                continue
            box, problem = _lesion_box(m, row, dicom_root, where)
            if problem:
                lesion_problems.append(problem)
            if box is None:
                continue
            marks = [{"file": written[f.rel], "box": box} for f in fs if f.rel in written]
            if not marks:
                continue
            lesion = {"laterality": fs[0].laterality, "type": "unknown", "marks": marks}
            if "type" in spec:
                t = _value(spec["type"], [row], header)
                if t is not None:
                    lesion["type"] = str(t)
            lesions.append(lesion)
        record: dict[str, Any] = {
            "exam_id": exam_id,
            "label": 1 if truth in ("screen_detected", "interval") else 0,
            "truth": truth,
            "attributes": attrs,
            "readers": readers,
            "images": images,
        }
        if lesions:
            record["lesions"] = lesions
        manifest_exams.append(record)

    manifest = {
        "schema": "mammocert/reference-set/v1",
        "id": set_id or f"imported-{m['name']}",
        "version": version,
        "description": m.get("description", f"imported with map {m['name']}"),
        "exams": manifest_exams,
        "import": {
            "map": m["name"],
            "source": m.get("source", ""),
            "caveat": m.get("caveat", ""),
            "deidentified": deidentify,
        },
    }
    digest = write_manifest(out, manifest)
    identifying = {f: r["send_gate"] for f, r in deid_report.items() if r["send_gate"]}
    report = {
        "map": m["name"],
        "digest": digest,
        "exams": {
            "kept": len(manifest_exams),
            "by_truth": dict(sorted(Counter(e["truth"] for e in manifest_exams).items())),
            "excluded": excluded,
        },
        "labels_rows_without_images": unmatched_rows,
        "files_skipped": skipped,
        "files_unreadable": unreadable,
        "headers_completed": header_completed,
        "lesion_problems": lesion_problems,
        "deidentification": {
            "applied": deidentify,
            "profile": deid.PROFILE_EDITION,
            "files_failing_send_gate": len(identifying),
            "files": deid_report,
        },
    }
    (out / "import-report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def import_cli(args: Any) -> int:
    """``mammocert cases import``."""
    m = resolve_map(args.map)
    key = None
    if args.deid_key is not None:
        raw = Path(args.deid_key).read_bytes() if Path(args.deid_key).is_file() else b""
        if len(raw) < 32:
            raise UsageError(
                f"--deid-key {args.deid_key}: needs a file of at least 32 random bytes "
                "(e.g. head -c 32 /dev/urandom > deid.key)"
            )
        key = raw
    report = import_set(
        Path(args.dicom),
        [Path(p) for p in args.labels],
        m,
        Path(args.out),
        set_id=args.id,
        version=args.version,
        deidentify=args.deidentify,
        key=key,
    )
    ex = report["exams"]
    truths = ", ".join(f"{v} {k}" for k, v in ex["by_truth"].items())
    print(f"imported {ex['kept']} exams ({truths}) into {args.out} with map {report['map']}")
    if ex["excluded"]:
        reasons = Counter(e["reason"] for e in ex["excluded"]).most_common(3)
        print(
            f"excluded {len(ex['excluded'])} exam(s): " + "; ".join(f"{n}x {r}" for r, n in reasons)
        )
    for what in (
        "labels_rows_without_images",
        "files_skipped",
        "files_unreadable",
        "lesion_problems",
    ):
        if report[what]:
            print(f"{what.replace('_', ' ')}: {len(report[what])} (see import-report.json)")
    d = report["deidentification"]
    if d["files_failing_send_gate"]:
        print(
            f"de-identification: {d['files_failing_send_gate']} file(s) are not de-identified; a "
            "remote vendor will refuse this set: re-import with --deidentify (details in import-report.json)"
        )
    else:
        print("de-identification: every file passes the send gate")
    print(f"digest {report['digest']}")
    return 0
