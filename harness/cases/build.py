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
from harness.cases.readers import describe
from harness.cases.recipe import Recipe, load_recipe
from harness.errors import UsageError
from harness.jsonutil import sha256_file

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
    images, marks = [], []
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
    return exam_record(plan, images, marks)


def exam_record(
    plan: ExamPlan, images: list[dict[str, Any]], marks: list[dict[str, Any]]
) -> dict[str, Any]:
    """An exam's manifest record (+ benign marks) from its plan, written images and lesion marks."""
    les = plan.lesion
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
        record["lesions"] = [{"laterality": les.laterality, "type": les.kind, "marks": marks}]
    elif les is not None:
        benign = [{"laterality": les.laterality, "type": les.kind, "marks": marks}]
    return {"record": record, "benign": benign}


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
    manifest: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "id": rec.id,
        "version": rec.version,
        "description": rec.description,
        "exams": [r["record"] for r in results],
        "generator": {
            "name": "mammocert synthetic phantom",
            "recipe_id": rec.id,
            "seed": rec.seed,
            "exams": rec.exams,
            "image_size": rec.image_size,
            "dose": rec.dose,
            "reader_model": describe(reader_model(rec)),
        },
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
