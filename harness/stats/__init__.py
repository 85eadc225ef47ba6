"""Statistics for conformance criteria: ROC/DeLong (pROC-exact), proportions, bootstrap,
non-inferiority, prevalence reweighting, FROC and multiplicity.

Direction convention everywhere: label 1 = cancer, higher score = more suspicious,
score >= threshold = positive; never flipped automatically.
"""

from harness.stats.bootstrap import (
    BootstrapResult,
    bootstrap_auc,
    bootstrap_sens_at_spec,
    bootstrap_sens_at_threshold,
    cluster_bootstrap_auc,
)
from harness.stats.froc import FrocCurve, froc_curve, is_hit, lesion_sensitivity_at_fp, match_marks
from harness.stats.multiplicity import holm, holm_reject
from harness.stats.proportions import (
    NIResult,
    clopper_pearson,
    rate_ratio_score_ci,
    tango_noninferiority,
    tango_paired_ci,
    tango_score,
    wilson,
)
from harness.stats.reweight import (
    Estimate,
    ProgrammeMetrics,
    reweighted_programme,
    screening_weights,
)
from harness.stats.roc import (
    AucResult,
    OperatingPoint,
    PairedAucTest,
    RocCurve,
    UnpairedAucTest,
    auc,
    delong,
    delong_paired,
    delong_unpaired,
    operating_point,
    roc_curve,
    sensitivity_at_specificity,
    threshold_for_specificity,
)

__all__ = [
    "AucResult",
    "BootstrapResult",
    "Estimate",
    "FrocCurve",
    "NIResult",
    "OperatingPoint",
    "PairedAucTest",
    "ProgrammeMetrics",
    "RocCurve",
    "UnpairedAucTest",
    "auc",
    "bootstrap_auc",
    "bootstrap_sens_at_spec",
    "bootstrap_sens_at_threshold",
    "clopper_pearson",
    "cluster_bootstrap_auc",
    "delong",
    "delong_paired",
    "threshold_for_specificity",
    "delong_unpaired",
    "froc_curve",
    "holm",
    "holm_reject",
    "is_hit",
    "lesion_sensitivity_at_fp",
    "match_marks",
    "operating_point",
    "rate_ratio_score_ci",
    "reweighted_programme",
    "roc_curve",
    "screening_weights",
    "sensitivity_at_specificity",
    "tango_noninferiority",
    "tango_paired_ci",
    "tango_score",
    "wilson",
]
