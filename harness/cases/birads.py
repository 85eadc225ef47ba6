"""Lesions described as radiologists describe them: BI-RADS shape, margin, calcification morphology
and distribution (recipe ``lesion_model: birads``).

The v1 lesions (``population.draw_lesion``) make a benign mass look like a circumscribed cancer;
here each lesion is drawn as a finding with the signs that tell benign from malignant, and the
renderer (``lesions.render_*_birads``) draws exactly those signs. Sources (reference_cases/README.md
lists them with what each gives):

* Descriptor vocabulary and physical sizes: ACR BI-RADS Atlas, 5th ed. (D'Orsi et al. 2013);
  IARC Atlas of breast cancer early detection, mammography lexicon (oval: at most two or three
  gentle lobulations; irregular: more).
* Cancer finding types at screening: Kayhan et al., Diagn Interv Radiol 2016;22:508 (65
  screen-detected cancers: mass 47.7 %, calcification 30.8 %, focal asymmetry 16.9 %,
  architectural distortion 3.1 %): the v2 recipes' ``cancer_types``.
* Likelihood of malignancy of a descriptor (``PPV``, what a reader's suspicion starts from):
  Liberman et al., AJR 1998;171:35 (spiculated margin 81 %, irregular shape 73 %, linear
  calcification morphology 81 %, segmental 74 % and linear 68 % distribution, BI-RADS 4 34 %);
  Orel et al., Radiology 1999;211:845 (BI-RADS 2: 0 of 40 malignant; BI-RADS 3: 2 %);
  Sickles, Radiology 1991;179:463 (solitary circumscribed mass, focal asymmetry and grouped round
  calcifications as probably benign, <= 2 %); ACR BI-RADS 5th ed. (fine pleomorphic 29 %);
  Ciatto et al., Eur J Cancer 1994;30A:40 (parenchymal distortion 20 %).

Proportions *within* a finding type that no source above gives (which benign mass, which margin
of a cancer) are assumptions of this module, marked "assumed" below, chosen so that the shares the
issue asks for hold (circumscribed cancers 12 %, within its 10-15 %).
"""

from __future__ import annotations

import numpy as np

# Malignant mass margins (assumed; circumscribed 12 %, the realistic minority of #30).
MALIGNANT_MARGINS = {
    "spiculated": 0.45,
    "indistinct": 0.30,
    "microlobulated": 0.13,
    "circumscribed": 0.12,
}
# Shape given margin (assumed): infiltrating margins go with an irregular outline.
MALIGNANT_SHAPES = {
    "spiculated": {"irregular": 0.8, "oval": 0.1, "round": 0.1},
    "indistinct": {"irregular": 0.7, "oval": 0.2, "round": 0.1},
    "microlobulated": {"irregular": 0.3, "oval": 0.5, "round": 0.2},
    "circumscribed": {"oval": 0.6, "round": 0.4},
}
# Benign masses (assumed shares). Fat-containing centre: hamartoma (fat lobules in a pseudo-
# capsule, "breast within a breast") and the intramammary lymph node (reniform, fatty hilum,
# usually <= 10 mm); BI-RADS atlas, 5th ed. A thin radiolucent halo around some cysts and
# fibroadenomas (the "halo sign").
BENIGN_MASSES = {"fibroadenoma": 0.40, "cyst": 0.35, "lymph_node": 0.15, "hamartoma": 0.10}
HALO_FRACTION = 0.3  # of cysts and fibroadenomas (assumed)
BENIGN_MASS_SIZE_MM = {  # diameter ranges (BI-RADS atlas descriptions; lymph node <= 10 mm)
    "fibroadenoma": (8.0, 25.0),
    "cyst": (6.0, 25.0),
    "lymph_node": (5.0, 10.0),
    "hamartoma": (15.0, 30.0),
}
# Malignant calcifications: morphology (assumed shares) and distribution given morphology (assumed;
# fine-linear forms follow a duct, so linear or segmental).
MALIGNANT_CALC_MORPHOLOGY = {"fine_pleomorphic": 0.6, "fine_linear_branching": 0.4}
MALIGNANT_CALC_DISTRIBUTION = {
    "fine_pleomorphic": {"grouped": 0.75, "linear": 0.1, "segmental": 0.15},
    "fine_linear_branching": {"grouped": 0.3, "linear": 0.35, "segmental": 0.35},
}
# Benign calcifications, typically benign morphologies of BI-RADS 5th ed. (assumed shares).
BENIGN_CALC_MORPHOLOGY = {
    "coarse_popcorn": 0.25,
    "rim": 0.15,
    "round": 0.30,
    "vascular": 0.15,
    "large_rod_like": 0.15,
}

# Likelihood of malignancy of a finding's most suspicious descriptor (sources in the module doc).
PPV = {
    "spiculated": 0.81,  # Liberman 1998
    "irregular": 0.73,  # Liberman 1998 (irregular shape)
    "suspicious_margin": 0.34,  # microlobulated / indistinct on an oval or round mass: BI-RADS 4, Liberman 1998
    "circumscribed": 0.02,  # BI-RADS 3 (Sickles 1991; Orel 1999: 2 %)
    "fat_containing": 0.005,  # BI-RADS 2 (Orel 1999: 0 of 40); floor, not zero
    "fine_linear_branching": 0.81,  # Liberman 1998 (linear morphology)
    "fine_pleomorphic": 0.29,  # ACR BI-RADS 5th ed.
    "segmental": 0.74,  # Liberman 1998
    "linear": 0.68,  # Liberman 1998
    "round": 0.02,  # grouped round calcifications: BI-RADS 3 (Sickles 1991)
    "typically_benign_calcification": 0.005,  # popcorn, rim, vascular, large rod-like: BI-RADS 2
    "distortion": 0.20,  # Ciatto 1994 (parenchymal distortion)
    "asymmetry": 0.02,  # focal asymmetry: BI-RADS 3 (Sickles 1991)
    "focal_density": 0.02,  # any other focal density a reader weighs (normal tissue): as asymmetry
}


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def draw_descriptors(kind: str, malignant: bool, rng: np.random.Generator) -> dict[str, object]:
    """A finding's descriptors: ``finding``, ``shape``, ``margin``, ``calc_morphology``,
    ``calc_distribution`` and its benign ``signs`` (``fat_centre``, ``halo``)."""
    d: dict[str, object] = {
        "finding": kind,
        "shape": None,
        "margin": None,
        "calc_morphology": None,
        "calc_distribution": None,
        "signs": [],
    }
    if kind == "mass" and malignant:
        margin = _choice(rng, MALIGNANT_MARGINS)
        d.update(finding="carcinoma", margin=margin, shape=_choice(rng, MALIGNANT_SHAPES[margin]))
    elif kind == "mass":
        finding = _choice(rng, BENIGN_MASSES)
        d.update(finding=finding, margin="circumscribed")
        if finding == "cyst":
            d["shape"] = "round" if rng.random() < 0.5 else "oval"
        else:
            d["shape"] = "oval"
        if finding in ("lymph_node", "hamartoma"):
            d["signs"] = ["fat_centre"]
        elif rng.random() < HALO_FRACTION:
            d["signs"] = ["halo"]
    elif kind == "calcification" and malignant:
        morph = _choice(rng, MALIGNANT_CALC_MORPHOLOGY)
        d.update(
            finding="carcinoma",
            calc_morphology=morph,
            calc_distribution=_choice(rng, MALIGNANT_CALC_DISTRIBUTION[morph]),
        )
    elif kind == "calcification":
        morph = _choice(rng, BENIGN_CALC_MORPHOLOGY)
        dist = {"round": "grouped", "vascular": "linear", "large_rod_like": "regional"}
        d.update(finding=morph, calc_morphology=morph, calc_distribution=dist.get(morph, "grouped"))
    elif kind == "distortion":
        d.update(finding="carcinoma" if malignant else "radial_scar")
    else:  # asymmetry
        d.update(finding="carcinoma" if malignant else "asymmetry", shape="focal_asymmetry")
    return d


def descriptor_ppv(kind: str, desc: dict[str, object]) -> float:
    """Likelihood of malignancy of the finding's most suspicious descriptor (``PPV``)."""
    if kind == "mass":
        if "fat_centre" in (desc.get("signs") or []):
            return PPV["fat_containing"]
        margin, shape = desc.get("margin"), desc.get("shape")
        p = PPV["circumscribed"]
        if margin == "spiculated":
            p = PPV["spiculated"]
        elif margin in ("indistinct", "microlobulated"):
            p = PPV["suspicious_margin"]
        if shape == "irregular":
            p = max(p, PPV["irregular"])
        return p
    if kind == "calcification":
        morph, dist = desc.get("calc_morphology"), desc.get("calc_distribution")
        if morph in ("fine_linear_branching", "fine_pleomorphic"):
            return max(PPV[str(morph)], PPV.get(str(dist), 0.0))
        if morph == "round":
            return PPV["round"]
        return PPV["typically_benign_calcification"]
    if kind == "distortion":
        return PPV["distortion"]
    return PPV["asymmetry"]


def descriptor_label(kind: str, desc: dict[str, object]) -> str:
    """One word-group per finding for tables: ``mass oval circumscribed halo``, ``calc rim``..."""
    if kind == "mass":
        parts = ["mass", str(desc.get("shape")), str(desc.get("margin"))]
        parts += list(desc.get("signs") or [])
        return " ".join(parts)
    if kind == "calcification":
        return f"calc {desc.get('calc_morphology')} {desc.get('calc_distribution')}"
    return str(kind)


__all__ = [
    "PPV",
    "draw_descriptors",
    "descriptor_ppv",
    "descriptor_label",
]
