"""``mammocert cases build`` / ``cases verify``: materialize a synthetic reference set and check it.

Exams are rendered in worker processes, one task per exam; each exam's randomness comes only
from the recipe seed and its index (``population.py``), so the set's bytes and digest do not
depend on the number of workers or the order in which they finish.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from harness.cases import birads
from harness.cases import readers as rd
from harness.cases.conspicuity import measure_view, two_view_background
from harness.cases.devices import PROFILES
from harness.cases.dicomio import MammogramMeta, uid, write_mammogram
from harness.cases.exam import VIEW_ORDER, render_exam
from harness.cases.manifest import (
    SCHEMA_ID,
    Manifest,
    load_manifest,
    parse_manifest,
    seal,
    verify_set,
    write_manifest,
)
from harness.cases.population import ExamPlan, plan_exams, reader_model
from harness.cases.readers import describe, describe_pixels
from harness.cases.recipe import Recipe, load_recipe
from harness.errors import UsageError
from harness.jsonutil import sha256_file
from harness.pixels import presentation_pixels

WINDOW_NAMES = ("NORMAL", "HARDER", "SOFTER")


def _study_date(index: int) -> str:
    """Screening dates spread over 2025 (deterministic; no clock)."""
    import datetime as dt

    return (dt.date(2025, 1, 6) + dt.timedelta(days=(index * 7) % 350)).strftime("%Y%m%d")


def render_and_write(recipe: Recipe, plan: ExamPlan, out: Path) -> dict[str, Any]:
    """Render one exam, write its four DICOM files, return its manifest record (+ benign marks)."""
    profile = PROFILES[plan.manufacturer]
    views = render_exam(plan, recipe.seed, recipe.image_size, recipe.dose)
    study = uid(recipe.id, recipe.seed, plan.exam_id, "study")
    series = uid(recipe.id, recipe.seed, plan.exam_id, "series")
    images, marks, measured = [], [], []
    for n, v in enumerate(views, start=1):
        rel = f"{plan.exam_id}/{v.laterality}{v.view}.dcm"
        c, w = v.window
        windows = (
            (c, w, "NORMAL"),
            (c, round(w * 0.8, 1), "HARDER"),
            (c, round(w * 1.25, 1), "SOFTER"),
        )
        meta = MammogramMeta(
            patient_id=plan.woman_id,
            study_uid=study,
            series_uid=series,
            sop_uid=uid(recipe.id, recipe.seed, plan.exam_id, v.laterality, v.view),
            laterality=v.laterality,
            view=v.view,
            manufacturer=profile.manufacturer,
            model=profile.model,
            pixel_spacing_mm=v.spacing,
            bits_stored=profile.bits_stored,
            photometric=profile.photometric,
            windows=windows,
            voi_lut_function=profile.voi_lut_function,
            detector_type=profile.detector_type,
            study_date=_study_date(plan.index),
            accession=f"A{plan.index + 1:07d}",
            patient_age=plan.age,
            instance_number=n,
            body_part_thickness_mm=round(plan.thickness_mm * (1.05 if v.view == "MLO" else 1.0), 1),
            compression_force_n=round(60 + 0.8 * plan.breast_depth_mm, 1),
        )
        write_mammogram(out / rel, v.pixels, meta)
        images.append(
            {
                "file": rel,
                "laterality": v.laterality,
                "view": v.view,
                "sha256": sha256_file(out / rel),
            }
        )
        if v.box is not None:
            marks.append({"file": rel, "box": [round(b, 2) for b in v.box]})
        if recipe.reader_model == "pixels":  # measured on the stored file, as a viewer shows it
            img = presentation_pixels(pydicom.dcmread(out / rel))
            measured.append(
                {
                    "breast": v.laterality,
                    "view": v.view,
                    **measure_view(img, v.mask, v.muscle, v.spacing, v.box, v.nipple_rc),
                }
            )
    result = exam_record(plan, images, marks)
    if measured:
        result["measured"] = measured
    return result


def exam_record(
    plan: ExamPlan, images: list[dict[str, Any]], marks: list[dict[str, Any]]
) -> dict[str, Any]:
    """An exam's manifest record (+ benign marks) from its plan, written images and lesion marks."""
    les = plan.lesion
    findings = []
    if les is not None:
        findings = [{"laterality": les.laterality, "type": les.kind, "marks": marks}]
        if les.descriptors:  # lesion_model: birads: the finding's descriptors, per lesion
            d = les.desc
            findings[0].update(
                {
                    "finding": d["finding"],
                    "shape": d["shape"],
                    "margin": d["margin"],
                    "calc_morphology": d["calc_morphology"],
                    "calc_distribution": d["calc_distribution"],
                    "signs": list(d["signs"]),
                    "size_mm": les.size_mm,
                    "subtle": bool(les.subtle),
                    "conspicuity": plan.conspicuity,
                }
            )
    record = {
        "exam_id": plan.exam_id,
        "label": plan.label,
        "truth": plan.truth,
        "attributes": {
            "age": plan.age,
            "density": plan.density,
            "manufacturer": plan.manufacturer,
            "lesion_type": les.kind if (les is not None and les.malignant) else "none",
            "woman_id": plan.woman_id,
            "lesion_size_mm": les.size_mm if (les is not None and les.malignant) else None,
            "subtle": bool(les.subtle) if les is not None else False,
            "mass_margin": les.margin
            if (les is not None and les.malignant and les.kind == "mass")
            else None,
            "benign_finding": les.kind if (les is not None and not les.malignant) else None,
            "glandular_fraction": plan.glandular_fraction,
            "thickness_mm": plan.thickness_mm,
            "conspicuity": plan.conspicuity,
        },
        "readers": dict(plan.readers),
        "images": images,
        "lesions": [],
    }
    benign = []
    if les is not None and les.malignant:
        record["lesions"] = findings
    elif les is not None:
        benign = findings
    return {"record": record, "benign": benign}


def apply_pixel_reads(rec: Recipe, plans: list[ExamPlan], results: list[dict[str, Any]]):
    """``reader_model: pixels``: calibrate the readers on the set's measured suspicions, then read
    every exam; a cancer the consensus missed becomes an interval cancer. Updates ``results``
    (records and benign findings) in place; returns the calibrated model."""
    ppv_focal = birads.PPV["focal_density"]
    s0, s_lesion = [], []
    for plan, res in zip(plans, results, strict=True):
        views = res["measured"]
        peaks = {(m["breast"], m["view"]): m["peaks"] for m in views}
        z_bg = max(two_view_background(peaks[(b, "CC")], peaks[(b, "MLO")]) for b in ("L", "R"))
        s_b = rd.background_suspicion(z_bg, ppv_focal)
        les = plan.lesion
        if les is None:
            s0.append(s_b)
            s_lesion.append(None)
            continue
        z_l = float(min([m["lesion"] for m in views if m["lesion"] is not None] or [0.0]))
        s_l = rd.lesion_suspicion(z_l, birads.descriptor_ppv(les.kind, les.desc), ppv_focal)
        s0.append(max(s_l, s_b))
        s_lesion.append(s_l)
        finding = (res["record"]["lesions"] or res["benign"])[0]
        finding["conspicuity"] = round(z_l, 4)
        res["record"]["attributes"]["conspicuity"] = round(z_l, 4)
    sd, ic = rec.mix.get("screen_detected", 0.0), rec.mix.get("interval", 0.0)
    model = rd.calibrate_pixels(
        s0,
        [p.label for p in plans],
        reader_sensitivity=rec.reader_sensitivity,
        reader_specificity=rec.reader_specificity,
        consensus_sensitivity=sd / (sd + ic) if sd + ic > 0 else 0.739,
        consensus_specificity=rec.consensus_specificity,
    )
    for plan, res, s, sl in zip(plans, results, s0, s_lesion, strict=True):
        rng = np.random.default_rng(np.random.SeedSequence(rec.seed, spawn_key=(plan.index, 9)))
        reads, lesion_scores = rd.read_exam(model, s, sl, rng)
        record = res["record"]
        record["readers"] = reads
        if plan.label:
            record["truth"] = "screen_detected" if reads["consensus"] else "interval"
        if lesion_scores is not None:
            (record["lesions"] or res["benign"])[0]["suspicion"] = lesion_scores
        del res["measured"]
    return model


_WORK: tuple[Recipe, Path] | None = None


def _init(recipe: Recipe, out: Path) -> None:
    global _WORK
    _WORK = (recipe, out)


def _task(plan: ExamPlan) -> dict[str, Any]:
    assert _WORK is not None
    return render_and_write(_WORK[0], plan, _WORK[1])


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out}: directory is not empty; choose a new --out or empty it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mammocert-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{out}: cannot write the reference set here ({exc.strerror}); choose a writable --out"
        ) from None


def build_reference_set(
    recipe: Path | str | Recipe,
    out: Path | str,
    exams: int | None = None,
    seed: int | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Manifest:
    """Build the set described by ``recipe`` into ``out`` and return its loaded manifest."""
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    rec = rec.with_overrides(exams=exams, seed=seed)
    out = Path(out)
    _prepare_out(out)
    plans = plan_exams(rec)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(plans)))
    results: list[dict[str, Any]] = []
    start = time.monotonic()
    bar = None
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("building exams"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} exams/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        bar.start()
        tid = bar.add_task("build", total=len(plans), rate=0.0)

    def tick() -> None:
        if bar is not None:
            bar.update(
                tid, completed=len(results), rate=len(results) / max(time.monotonic() - start, 1e-9)
            )

    try:
        if n_workers == 1:
            for p in plans:
                results.append(render_and_write(rec, p, out))
                tick()
        else:
            ctx = mp.get_context("fork")
            with ctx.Pool(n_workers, initializer=_init, initargs=(rec, out)) as pool:
                for r in pool.imap(_task, plans, chunksize=1):  # imap keeps exam order
                    results.append(r)
                    tick()
    finally:
        if bar is not None:
            bar.stop()
    return write_set(rec, plans, results, out)


def write_set(
    rec: Recipe, plans: list[ExamPlan], results: list[dict[str, Any]], out: Path
) -> Manifest:
    """Read the rendered exams (``reader_model: pixels``) and write the set's manifest; ``results``
    are ``render_and_write``'s records, in exam order."""
    generator: dict[str, Any] = {
        "name": "mammocert synthetic phantom",
        "recipe_id": rec.id,
        "seed": rec.seed,
        "exams": rec.exams,
        "image_size": rec.image_size,
        "dose": rec.dose,
    }
    if rec.reader_model == "pixels":
        pix = apply_pixel_reads(rec, plans, results)
        generator["reader_model"] = describe_pixels(pix)
        generator["reader_calibration"] = {k: round(v, 4) for k, v in pix.expected.items()}
    else:
        generator["reader_model"] = describe(reader_model(rec))
    if rec.lesion_model != "v1":
        generator["lesion_model"] = rec.lesion_model
    manifest: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "id": rec.id,
        "version": rec.version,
        "description": rec.description,
        "exams": [r["record"] for r in results],
        "generator": generator,
        "benign_findings": {r["record"]["exam_id"]: r["benign"] for r in results if r["benign"]},
    }
    write_manifest(out, manifest)
    return load_manifest(out)


def planned_manifest(recipe: Path | str | Recipe, exams: int | None = None) -> Manifest:
    """The set's truths, attributes and reads without rendering it, for criteria that never open an
    image: the files are named, not written (hashes zero), and there are no lesion marks. Every
    other field equals what ``build_reference_set`` writes, because both come from the same plans."""
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    rec = rec.with_overrides(exams=exams)
    if rec.reader_model == "pixels":
        raise UsageError(
            f"{rec.path}: reader_model: pixels reads the rendered pixels, so the set's reads and "
            "truths exist only once it is built; build it (mammocert cases build) and use --cases"
        )
    records = []
    for plan in plan_exams(rec):
        images = [
            {
                "file": f"{plan.exam_id}/{lat}{view}.dcm",
                "laterality": lat,
                "view": view,
                "sha256": "0" * 64,
            }
            for lat, view in VIEW_ORDER
        ]
        records.append(exam_record(plan, images, [])["record"])
    manifest = {
        "schema": SCHEMA_ID,
        "id": rec.id,
        "version": rec.version,
        "description": rec.description,
        "exams": records,
    }
    return parse_manifest(seal(manifest), Path("."))


def summary_table(manifest: Manifest):
    """A rich table: exams, truths, density mix, manufacturers, reader rates."""
    from rich.table import Table

    t = Table(title=f"reference set {manifest.id} {manifest.version}")
    t.add_column("what")
    t.add_column("count", justify="right")
    exams = manifest.exams
    t.add_row("exams", str(len(exams)))
    for truth, n in sorted(Counter(e.truth for e in exams).items()):
        t.add_row(f"truth {truth}", str(n))
    for d, n in sorted(Counter(str(e.attributes.get("density")) for e in exams).items()):
        t.add_row(f"density {d}", str(n))
    for m, n in sorted(Counter(str(e.attributes.get("manufacturer")) for e in exams).items()):
        t.add_row(f"manufacturer {m}", str(n))
    for lt, n in sorted(
        Counter(str(e.attributes.get("lesion_type")) for e in exams if e.label).items()
    ):
        t.add_row(f"cancer type {lt}", str(n))
    return t


def build_cli(args) -> int:
    """``mammocert cases build``."""
    from rich.console import Console

    console = Console(stderr=False)
    t0 = time.monotonic()
    manifest = build_reference_set(
        args.recipe, args.out, exams=args.exams, seed=args.seed, workers=args.workers, progress=True
    )
    dt = time.monotonic() - t0
    console.print(summary_table(manifest))
    console.print(f"built {len(manifest.exams)} exams in {dt:.1f} s into {args.out}")
    console.print(f"digest {manifest.digest}")
    return 0


def verify_cli(args) -> int:
    """``mammocert cases verify DIR``: exit 0 and the digest, or VerificationError (exit 1)."""
    manifest = verify_set(args.dir)
    n = sum(len(e.images) for e in manifest.exams)
    print(f"verified {len(manifest.exams)} exams, {n} images in {args.dir}")
    print(f"digest {manifest.digest}")
    return 0
