"""Vendors behind REST (docs/contracts.md §3.2, ``interface: rest``): one adapter, three profiles.

:class:`RestAdapter` holds what every profile shares: the :class:`~.transport.RestClient`
(secrets from the environment, TLS, timeouts, bounded retries, every attempt recorded in
``attempts.jsonl``), the per-exam deadline (:func:`harness.vendors.remote.exam_deadline`) and
the de-identification rules of :mod:`harness.vendors.remote`, which
:func:`harness.vendors.open_adapter` applies to the whole set before this adapter opens. The
profile named by ``rest.protocol`` (:data:`PROFILES`) speaks the endpoint's protocol:

* ``oip-v2``: the Open Inference Protocol (KServe V2: Triton, KServe, MLServer), tensors built
  exactly as an ONNX package's input (:mod:`.oip`);
* ``dicomweb``: STOW-RS the exam, find and fetch the result report by QIDO-RS/WADO-RS
  (:mod:`.dicomweb`);
* ``json-job``: a vendor's own JSON API, a synchronous result or a ``202`` job to poll, mapped
  to predictions by JMESPath expressions (:mod:`.jsonjob`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from harness.errors import VendorPackageError
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.vendors import remote
from harness.vendors.adapter import AdapterInfo
from harness.vendors.package import VendorPackage
from harness.vendors.rest.transport import RestClient

PROFILES: Mapping[str, str] = {
    "oip-v2": "harness.vendors.rest.oip:OipProfile",
    "dicomweb": "harness.vendors.rest.dicomweb:DicomwebProfile",
    "json-job": "harness.vendors.rest.jsonjob:JsonJobProfile",
}


class RestProfile(Protocol):
    """One REST protocol, built as ``Profile(package, client, evidence_dir)``.

    The constructor checks the endpoint before the run (health, metadata); an endpoint that is
    down sets ``down_reason`` and every exam becomes an error with it. ``identity`` adds to the
    adapter's model digests what the endpoint says about the model (e.g. OIP metadata).
    """

    down_reason: str | None
    identity: Mapping[str, str]

    def prepare(self, exam: ExamInput) -> Any:
        """CPU work (pseudonymise, build tensors or the upload); VendorFault for bad input."""
        ...

    def infer(self, prepared: Any, deadline: float) -> ExamOutput:
        """Send and wait for the result until ``deadline`` (``time.monotonic()``)."""
        ...

    def close(self) -> None: ...


class RestAdapter:
    """A :class:`~harness.vendors.adapter.VendorAdapter` for ``interface: rest``."""

    def __init__(
        self, pkg: VendorPackage, *, device: str = "cpu", evidence_dir: Path | None = None
    ) -> None:
        import tempfile

        spec = pkg.rest
        if spec is None:
            raise VendorPackageError(
                f"{pkg.source}: interface rest needs a 'rest' section (see docs/contracts.md §3.2)"
            )
        if evidence_dir is None:
            evidence_dir = Path(tempfile.mkdtemp(prefix="mammocert-rest-evidence-"))
        self.pkg = pkg
        self.timeout_s = spec.timeout_s
        self.client = RestClient(pkg, Path(evidence_dir))  # secrets and TLS files checked first
        module, name = PROFILES[spec.protocol].split(":")
        profile_class = getattr(importlib.import_module(module), name)
        self.profile: RestProfile = profile_class(pkg, self.client, Path(evidence_dir))
        digests = dict(pkg.model_digests)
        digests.update(self.profile.identity)
        where = f"rest {spec.protocol} {self.client.base_url}"
        detail = getattr(self.profile, "transport_detail", "")  # e.g. oip-v2's tensor encoding
        if detail:
            where += f" ({detail})"
        if self.client.insecure:
            where += " (TLS not verified)"
        self.info = AdapterInfo(interface="rest", model_digests=digests, execution_provider=where)
        # oip-v2 sends tensors the harness built after its own intended-use check: input
        # rejection is then not the vendor's to claim (DICOM-based profiles judge it).
        self.harness_checks_input = bool(getattr(self.profile, "harness_checks_input", False))

    def prepare(self, exam: ExamInput) -> Any:
        return self.profile.prepare(exam)

    def infer(self, prepared: Any) -> ExamOutput:
        from harness.errors import VendorFault

        if self.profile.down_reason is not None:
            raise VendorFault(self.profile.down_reason)
        return self.profile.infer(prepared, remote.exam_deadline(self.timeout_s))

    def close(self) -> None:
        try:
            self.profile.close()
        finally:
            self.client.close()
