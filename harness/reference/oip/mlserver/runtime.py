"""An MLServer custom runtime serving a mammocert ONNX package's model over the Open Inference
Protocol (docs/contracts.md §3.2 "oip-v2"): the example of the tensor binding a vendor on Seldon
MLServer would copy next to its ``model-settings.json``.

The runtime runs the model on the image tensor exactly as sent (mammocert has already built the
presentation pixels and layout of the package's ``onnx.input``) and returns the requested outputs
plus the BYTES ``study_uid`` echo of the request's Study Instance UID input, which tells the
harness the answer is for the exam it sent (a response ``id`` cannot: MLServer sets it itself).

Runs inside MLServer's own environment (``mlserver``, ``onnxruntime``), not mammocert's.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri


class MammocertOnnx(MLModel):
    """``parameters.uri``: the ONNX file; ``parameters.extra``: ``study_uid_input`` and
    ``study_uid_output`` (both default ``study_uid``)."""

    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            await get_model_uri(self.settings), sess_options=options
        )
        extra = self.settings.parameters.extra or {}
        self._uid_in = extra.get("study_uid_input", "study_uid")
        self._uid_out = extra.get("study_uid_output", "study_uid")
        self._image = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        by_name = {i.name: i for i in payload.inputs}
        if self._image not in by_name or self._uid_in not in by_name:
            raise InferenceError(f"the request needs inputs {self._image!r} and {self._uid_in!r}")
        image = NumpyCodec.decode_input(by_name[self._image]).astype(np.float32, copy=False)
        study_uid = StringCodec.decode_input(by_name[self._uid_in])
        if len(study_uid) != 1:
            raise InferenceError(f"{self._uid_in!r} must hold one Study Instance UID")
        wanted = (
            [o.name for o in payload.outputs]
            if payload.outputs
            else [*self._outputs, self._uid_out]
        )
        unknown = sorted(set(wanted) - {*self._outputs, self._uid_out})
        if unknown:
            raise InferenceError(f"unknown outputs {unknown}")
        names = [n for n in wanted if n != self._uid_out]
        values = dict(zip(names, self._session.run(names, {self._image: image}), strict=True))
        outputs = [
            ResponseOutput(name=n, datatype="BYTES", shape=[1], data=[study_uid[0]])
            if n == self._uid_out
            else NumpyCodec.encode_output(n, values[n])
            for n in wanted
        ]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)
