"""Fixtures in the layouts of the public research sets, with synthetic pixels.

Each builder writes what a user downloads (DICOM folders laid out as the set lays them out,
headers as the set's files carry them) and the labels table with the set's published columns,
for a handful of women: no real data. Returns ``(dicom_root, [labels CSVs])``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from harness.cases.dicomio import MammogramMeta, mammogram_dataset, uid, write_dataset

VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


def _pixels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(200, 900, size=(48, 40)).astype(np.uint16)
    img[:, 30:] = 0  # background away from the chest wall
    return img


def _write(path: Path, meta: MammogramMeta, seed: int, **extra: str) -> None:
    ds = mammogram_dataset(_pixels(seed), meta)
    for k, v in extra.items():
        if v is None:
            if k in ds:
                del ds[k]
        else:
            setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(path, ds)


def _meta(patient: str, study: str, lat: str, view: str, n: int, **kw) -> MammogramMeta:
    return MammogramMeta(
        patient_id=patient,
        study_uid=study,
        series_uid=uid(study, lat, view, "series"),
        sop_uid=uid(study, lat, view, n),
        laterality=lat,
        view=view,
        manufacturer=kw.get("manufacturer", "HOLOGIC"),
        model="Selenia Dimensions",
        pixel_spacing_mm=0.1,
        bits_stored=12,
        photometric="MONOCHROME2",
        windows=((512.0, 1024.0, "NORMAL"),),
        patient_age=kw.get("age", 57),
    )


def meta_view_codes(meta: MammogramMeta):
    """The View Code Sequence the product writes for ``meta`` (kept as it is)."""
    return mammogram_dataset(np.zeros((2, 2), np.uint16), meta).ViewCodeSequence


def _csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    return path


def vindr(root: Path) -> tuple[Path, list[Path]]:
    """VinDr-Mammo: images/<study_id>/<image_id>.dicom; study 1 BI-RADS 5 with a mass box on LCC
    and LMLO, study 2 BI-RADS 1, study 3 misses its RMLO."""
    images = root / "images"
    breast_cols = ["study_id", "series_id", "image_id", "laterality", "view_position", "height",
                   "width", "breast_birads", "breast_density", "split"]  # fmt: skip
    finding_cols = breast_cols[:-1] + ["finding_categories", "finding_birads", "xmin", "ymin",
                                       "xmax", "ymax", "split"]  # fmt: skip
    breast_rows, finding_rows = [], []
    for s, birads in ((1, 5), (2, 1), (3, 2)):
        study = f"vindrstudy{s:03d}"
        study_uid = uid("vindr", s)
        for n, (lat, view) in enumerate(VIEWS):
            if s == 3 and (lat, view) == ("R", "MLO"):
                continue
            image_id = f"img{s:03d}{n}"
            _write(images / study / f"{image_id}.dicom", _meta("ANONYMOUS", study_uid, lat, view, n),
                   s * 10 + n, PatientIdentityRemoved="YES")  # fmt: skip
            side_birads = birads if lat == "L" else 1
            row = {"study_id": study, "series_id": f"ser{s}{lat}", "image_id": image_id,
                   "laterality": lat, "view_position": view, "height": 48, "width": 40,
                   "breast_birads": f"BI-RADS {side_birads}", "breast_density": "DENSITY C",
                   "split": "training"}  # fmt: skip
            breast_rows.append(row)
            if side_birads >= 4:
                finding_rows.append({**row, "finding_categories": "['Mass']",
                                     "finding_birads": "BI-RADS 5", "xmin": 5, "ymin": 6,
                                     "xmax": 15, "ymax": 18})  # fmt: skip
            else:
                finding_rows.append({**row, "finding_categories": "['No Finding']"})
    return images, [
        _csv(root / "breast-level_annotations.csv", breast_cols, breast_rows),
        _csv(root / "finding_annotations.csv", finding_cols, finding_rows),
    ]


def rsna(root: Path) -> tuple[Path, list[Path]]:
    """RSNA screening: train_images/<patient_id>/<image_id>.dcm; patient 10 cancer on the right,
    patient 11 biopsied benign, patient 12 normal with an extra ML view."""
    images = root / "train_images"
    cols = ["site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy",
            "invasive", "BIRADS", "implant", "density", "machine_id", "difficult_negative_case"]  # fmt: skip
    rows = []
    for pid, cancer_side, biopsy in ((10, "R", 0), (11, None, 1), (12, None, 0)):
        study_uid = uid("rsna", pid)
        views = list(VIEWS) + ([("L", "ML")] if pid == 12 else [])
        for n, (lat, view) in enumerate(views):
            image_id = 1000 * pid + n
            meta = _meta(
                str(pid), study_uid, lat, "MLO" if view == "ML" else view, n, manufacturer="GE"
            )
            _write(images / str(pid) / f"{image_id}.dcm", meta, pid * 10 + n, ViewPosition=view,
                   ViewCodeSequence=None if view == "ML" else meta_view_codes(meta),
                   PatientIdentityRemoved="YES", PatientName="ANONYMOUS")  # fmt: skip
            rows.append({"site_id": 1, "patient_id": pid, "image_id": image_id, "laterality": lat,
                         "view": view, "age": 61.0, "cancer": int(lat == cancer_side),
                         "biopsy": int(biopsy or lat == cancer_side), "invasive": 0, "BIRADS": "",
                         "implant": 0, "density": "B", "machine_id": 49,
                         "difficult_negative_case": "False"})  # fmt: skip
    return images, [_csv(root / "train.csv", cols, rows)]


def cmmd(root: Path) -> tuple[Path, list[Path]]:
    """CMMD: CMMD/<ID1>/<series>/1-1.dcm; D1-0001 malignant left (CC+MLO only), D1-0002 benign
    right; the clinical table exported to CSV."""
    images = root / "CMMD"
    cols = ["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"]
    rows = []
    for pid, side, cls in (("D1-0001", "L", "Malignant"), ("D1-0002", "R", "Benign")):
        study_uid = uid("cmmd", pid)
        for n, view in enumerate(("CC", "MLO")):
            _write(images / pid / f"series{n}" / "1-1.dcm", _meta(pid, study_uid, side, view, n),
                   int(pid[-4:]) + n, PatientIdentityRemoved="YES", PatientName="ANONYMOUS")  # fmt: skip
        rows.append({"ID1": pid, "LeftRight": side, "Age": 48, "number": 2,
                     "abnormality": "mass", "classification": cls,
                     "subtype": "Luminal A" if cls == "Malignant" else ""})  # fmt: skip
    return images, [_csv(root / "CMMD_clinicaldata_revision.csv", cols, rows)]


def cbis(root: Path) -> tuple[Path, list[Path]]:
    """CBIS-DDSM: <Mass-Training_P_xxxxx_LEFT_CC>/<study>/<series>/000000.dcm as the case
    description CSV's paths say, with ROI masks; P_00001 a malignant mass on LEFT CC and MLO,
    P_00004 a benign calcification on RIGHT CC; no ImageLaterality in the headers (the CSV says)."""
    cols_mass = ["patient_id", "breast_density", "left or right breast", "image view",
                 "abnormality id", "abnormality type", "mass shape", "mass margins", "assessment",
                 "pathology", "subtlety", "image file path", "cropped image file path",
                 "ROI mask file path"]  # fmt: skip
    cols_calc = [c if c != "breast_density" else "breast density" for c in cols_mass]
    cols_calc = [
        {"mass shape": "calc type", "mass margins": "calc distribution"}.get(c, c)
        for c in cols_calc
    ]
    mass_rows, calc_rows = [], []
    for pid, kind, side, views, pathology in (
        ("P_00001", "Mass", "LEFT", ("CC", "MLO"), "MALIGNANT"),
        ("P_00004", "Calc", "RIGHT", ("CC",), "BENIGN"),
    ):
        for n, view in enumerate(views):
            folder = f"{kind}-Training_{pid}_{side}_{view}"
            study_uid = uid("cbis", folder)
            image_rel = f"{folder}/{study_uid}/{uid(folder, 's')}/000000.dcm"
            mask_rel = f"{folder}_1/{uid(folder, 'mask')}/{uid(folder, 'ms')}/000001.dcm"
            meta = _meta(folder, study_uid, side[0], view, n, manufacturer="DDSM")
            _write(root / image_rel, meta, n + len(pid), ImageLaterality=None, PatientName=folder,
                   PatientIdentityRemoved=None)  # fmt: skip
            mask = np.zeros((48, 40), dtype=np.uint16)
            mask[10:20, 4:12] = 255
            mask_meta = _meta(f"{folder}_1", uid(folder, "mask"), side[0], view, 9)
            ds = mammogram_dataset(mask, mask_meta)
            (root / mask_rel).parent.mkdir(parents=True, exist_ok=True)
            write_dataset(root / mask_rel, ds)
            row = {"patient_id": pid, "breast_density": 3, "breast density": 3,
                   "left or right breast": side, "image view": view, "abnormality id": 1,
                   "abnormality type": "mass" if kind == "Mass" else "calcification",
                   "assessment": 4, "pathology": pathology, "subtlety": 3,
                   "image file path": image_rel, "cropped image file path": mask_rel,
                   "ROI mask file path": mask_rel}  # fmt: skip
            (mass_rows if kind == "Mass" else calc_rows).append(row)
    return root, [
        _csv(root / "mass_case_description_train_set.csv", cols_mass, mass_rows),
        _csv(root / "calc_case_description_train_set.csv", cols_calc, calc_rows),
    ]


BUILDERS = {"vindr-mammo": vindr, "rsna-screening": rsna, "cmmd": cmmd, "cbis-ddsm": cbis}
