"""A KServe Python model server serving a mammocert ONNX package's model over the Open Inference
Protocol (docs/contracts.md §3.2 "oip-v2"), with the binary tensor extension: the example of the
tensor binding a vendor on KServe would copy.

The model runs the image tensor exactly as sent and returns the requested outputs plus the BYTES
``study_uid`` echo of the request's Study Instance UID input. Binary outputs follow the request
(``binary_data_output`` or each output's ``binary_data``), as KServe's data plane defines.

Runs inside KServe's own environment (``kserve``, ``onnxruntime``), not mammocert's::

    python server.py --model model.onnx --name mammo --port 8080

It listens on 127.0.0.1 only (KServe's own server binds every interface; this script does not
use that default) and starts no gRPC server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the ONNX file")
    parser.add_argument("--name", default="mammo", help="the model name in /v2/models/{name}")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--study-uid-input", default="study_uid")
    parser.add_argument("--study-uid-output", default="study_uid")
    opts = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve parses the command line when imported; give it none

    import kserve
    import numpy as np
    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse
    from kserve.errors import InvalidInput
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    def dims(shape: list) -> list[int]:
        return [d if isinstance(d, int) else -1 for d in shape]  # symbolic (N) -> -1

    class MammocertOnnx(kserve.Model):
        def __init__(self) -> None:
            super().__init__(opts.name)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(opts.model, sess_options=options)
            self.image = self.session.get_inputs()[0]
            self.names = [o.name for o in self.session.get_outputs()]
            self.ready = True

        def get_input_types(self) -> list[dict]:
            return [
                {"name": self.image.name, "datatype": "FP32", "shape": dims(self.image.shape)},
                {"name": opts.study_uid_input, "datatype": "BYTES", "shape": [1]},
            ]

        def get_output_types(self) -> list[dict]:
            return [
                {"name": o.name, "datatype": "FP32", "shape": dims(o.shape)}
                for o in self.session.get_outputs()
            ] + [{"name": opts.study_uid_output, "datatype": "BYTES", "shape": [1]}]

        async def predict(
            self, payload: InferRequest, headers=None, response_headers=None
        ) -> InferResponse:
            image = payload.get_input_by_name(self.image.name)
            uid = payload.get_input_by_name(opts.study_uid_input)
            if image is None or uid is None:
                raise InvalidInput(f"needs inputs {self.image.name!r} and {opts.study_uid_input!r}")
            study_uid = uid.as_numpy().reshape(-1)
            if study_uid.shape[0] != 1:
                raise InvalidInput(f"{opts.study_uid_input!r} must hold one Study Instance UID")
            wanted = (
                [o.name for o in payload.request_outputs]
                if payload.request_outputs
                else [*self.names, opts.study_uid_output]
            )
            names = [n for n in wanted if n != opts.study_uid_output]
            unknown = sorted(set(names) - set(self.names))
            if unknown:
                raise InvalidInput(f"unknown outputs {unknown}")
            pixels = image.as_numpy().astype(np.float32, copy=False)
            values = dict(
                zip(names, self.session.run(names, {self.image.name: pixels}), strict=True)
            )
            outputs = []
            for n in wanted:
                if n == opts.study_uid_output:
                    echo = study_uid[0]
                    out = InferOutput(n, [1], "BYTES")
                    out.set_data_from_numpy(
                        np.array(
                            [echo if isinstance(echo, bytes) else str(echo).encode()], np.object_
                        ),
                        binary_data=False,
                    )
                else:
                    out = InferOutput(n, list(values[n].shape), "FP32")
                    out.set_data_from_numpy(values[n], binary_data=False)
                outputs.append(out)
            return InferResponse(
                payload.id,
                self.name,
                outputs,
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )

    server = kserve.ModelServer(http_port=opts.port, enable_grpc=False)
    server.register_model(MammocertOnnx())
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        opts.port,
    )
    rest.config.host = opts.host  # KServe hard-codes 0.0.0.0 here
    asyncio.run(rest.start())


if __name__ == "__main__":
    main()
