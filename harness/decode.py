"""Decoding compressed pixel data off the runner's prefetch threads.

A real screening set arrives JPEG 2000-compressed, and one full-size image takes seconds to decode.
OpenJPEG (pylibjpeg-openjpeg) is not thread-safe, so in the prefetch threads every compressed
decode waits for ``harness.pixels.CODEC_LOCK`` and the decodes of a run happen one at a time.
Decoders here take that work elsewhere; :func:`harness.pixels.decoded` uses the one installed
with :func:`harness.pixels.decoding_with` (the local executor installs one for its run):

* :class:`ProcessDecoder`: a small pool of worker processes (forkserver, like the model
  process). Only compressed pixel data of at least ``MIN_POOL_PIXELS`` is sent: the pixel
  module and the encoded bytes go out, the decoded array comes back pickled. For a 4096 x 3328
  image ``bench/bench_decode.py`` measured 114 ms for that trip against 50 ms through a
  shared-memory block, next to a 1.9 s decode: shared memory would save about 3 % of a decode
  but leaves blocks in /dev/shm when a process dies between the two sides, so the array is
  pickled. Each process decodes with pydicom's ``pixel_array`` exactly as this process would,
  so the values are the same bit for bit.
  OpenJPEG's own threads would add parallelism within one image, but the pylibjpeg-openjpeg
  wheel in use (2.6.0) is built without thread support (``opj_has_thread_support()`` is 0, so
  ``OPJ_NUM_THREADS`` does nothing) and its ``decode`` has no threads option: the parallelism is
  across images, one process per core.
* :class:`GpuDecoder`: nvImageCodec (``nvidia.nvimgcodec``) when it is installed and the model
  runs on CUDA; lossless JPEG 2000 only: every other syntax, and any image whose array is not
  the one the CPU gives (shape, dtype), goes to the CPU decoder. nvImageCodec is not a
  dependency; :func:`open_decoder` falls back to the process pool when it cannot be imported.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import JPEG2000Lossless

from harness.pixels import CODEC_LOCK, transfer_syntax

CUDA_PROVIDER = "CUDAExecutionProvider"
# Smaller compressed images are decoded in the calling thread: for them the trip to a process
# costs more than it saves (600 x 480, two threads, loaded 2-core machine: 46 ms per image under
# the lock, 74 ms through the processes), while a full-size mammogram (5-14 Mpx, seconds to
# decode) spends about 5 % of its decode on the trip (bench/bench_decode.py).
MIN_POOL_PIXELS = 1_000_000
PIXEL_GROUPS = (0x0028, 0x7FE0)  # Image Pixel module attributes and the pixel data itself


class Decoder(Protocol):
    """Compressed pixel data of one dataset -> its stored values (``ds.pixel_array``)."""

    def __call__(self, ds: Dataset) -> np.ndarray: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class DecodeCrash(RuntimeError):
    """A decoder process died while decoding (the image's pixel data crashed OpenJPEG)."""


def pixel_module(ds: Dataset) -> Dataset:
    """What decoding needs of ``ds``: its transfer syntax, group 0028 and the pixel data."""
    out = Dataset()
    out.file_meta = FileMetaDataset()
    out.file_meta.TransferSyntaxUID = transfer_syntax(ds)
    for elem in ds:
        if elem.tag.group in PIXEL_GROUPS:
            out.add(elem)
    return out


def decode_module(module: Dataset) -> np.ndarray:
    """In a decoder process: ``pixel_array`` of a :func:`pixel_module` (one decode per process at
    a time, so OpenJPEG needs no lock here). An exception that would not survive the trip back is
    replaced by a RuntimeError with the same text."""
    try:
        return module.pixel_array
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any unpicklable exception is re-described
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise


class LockedDecoder:
    """The calling thread decodes, under CODEC_LOCK (what ``pixels.decoded`` does with no decoder
    installed): one compressed decode at a time in the whole process."""

    def describe(self) -> str:
        return "in-thread under the codec lock"

    def __call__(self, ds: Dataset) -> np.ndarray:
        if transfer_syntax(ds).is_compressed:
            with CODEC_LOCK:
                return ds.pixel_array
        return ds.pixel_array

    def close(self) -> None:
        pass


class ProcessDecoder:
    """Compressed pixel data of at least ``min_pixels`` decoded in ``processes`` worker processes;
    the rest in the caller (compressed: under CODEC_LOCK).

    Started on the first compressed image (an uncompressed set starts no process). Thread-safe:
    the prefetch threads submit at once and each waits for its own image. A process that dies
    (a crash inside OpenJPEG) fails that image with :class:`DecodeCrash` and the pool is replaced
    for the next one."""

    def __init__(
        self,
        processes: int | None = None,
        decode: Callable[[Dataset], np.ndarray] = decode_module,
        min_pixels: int = MIN_POOL_PIXELS,
    ) -> None:
        self.processes = processes or max(1, os.cpu_count() or 1)
        self.min_pixels = min_pixels
        self.decode = decode  # what a process runs (a module-level function: it is pickled)
        self.sent = 0  # images decoded in the processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        plural = "es" if self.processes > 1 else ""
        return f"{self.processes} decoder process{plural} (images of >= {self.min_pixels} px)"

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # forkserver: never forks the harness's threads (the model process uses it too)
                ctx = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(self.processes, mp_context=ctx)
            return self._pool

    def __call__(self, ds: Dataset) -> np.ndarray:
        if not transfer_syntax(ds).is_compressed:
            return ds.pixel_array
        if _pixel_count(ds) < self.min_pixels:
            with CODEC_LOCK:
                return ds.pixel_array
        pool = self._executor()
        try:
            future = pool.submit(self.decode, pixel_module(ds))
            with self._lock:
                self.sent += 1
            return future.result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise DecodeCrash(
                f"the decoder process died decoding {transfer_syntax(ds).name} pixel data"
            ) from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class GpuDecoder:
    """JPEG 2000 on the GPU with nvImageCodec; everything else through ``fallback``."""

    # Lossless only: the reversible wavelet is integer arithmetic, so any conformant decoder gives
    # OpenJPEG's values; lossy (irreversible) decodes may differ in rounding between decoders.
    SYNTAXES = (JPEG2000Lossless,)

    def __init__(self, nvimgcodec: Any, fallback: Decoder) -> None:
        self._codec = nvimgcodec
        self._decoder = nvimgcodec.Decoder()
        self._params = nvimgcodec.DecodeParams(
            color_spec=nvimgcodec.ColorSpec.UNCHANGED, allow_any_depth=True
        )
        self.fallback = fallback
        # one decode at a time: the prefetch threads share this decoder, and a GPU decode of one
        # image is short next to the CPU's
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"nvImageCodec (JPEG 2000), else {self.fallback.describe()}"

    def __call__(self, ds: Dataset) -> np.ndarray:
        from pydicom.encaps import get_frame

        if transfer_syntax(ds) not in self.SYNTAXES or int(ds.get("NumberOfFrames", 1) or 1) != 1:
            return self.fallback(ds)
        try:
            frame = get_frame(ds.PixelData, 0, number_of_frames=1)
            with self._lock:
                image = self._decoder.decode(frame, params=self._params)
                arr = np.asarray(image.cpu()) if image is not None else None
        except Exception:  # noqa: BLE001 - whatever the GPU cannot decode, the CPU decides
            return self.fallback(ds)
        if arr is not None and arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        expected = np.dtype(f"{'i' if ds.get('PixelRepresentation', 0) else 'u'}{_bytes(ds)}")
        if arr is None or arr.shape != (ds.get("Rows"), ds.get("Columns")) or arr.dtype != expected:
            return self.fallback(ds)  # not the array the CPU gives: let the CPU decode it
        return np.ascontiguousarray(arr)

    def close(self) -> None:
        self.fallback.close()


def _pixel_count(ds: Dataset) -> int:
    """Rows x Columns x frames; 0 when they are not numbers (the in-thread decode then reports the
    dataset's fault exactly as it always has)."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * frames
    except (TypeError, ValueError):
        return 0


def _bytes(ds: Dataset) -> int:
    return max(1, (int(ds.get("BitsAllocated", 8) or 8) + 7) // 8)


def nvimgcodec_module() -> Any | None:
    """``nvidia.nvimgcodec`` when it can be imported (with its CUDA libraries), else None."""
    try:
        from nvidia import nvimgcodec  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - missing, or present without a usable CUDA
        return None
    return nvimgcodec


def open_decoder(execution_provider: str, processes: int | None = None) -> Decoder:
    """The decoder for a run whose model runs on ``execution_provider``: nvImageCodec when the
    model is on CUDA and nvImageCodec is installed and starts, else the process pool."""
    cpu = ProcessDecoder(processes)
    if execution_provider == CUDA_PROVIDER:
        module = nvimgcodec_module()
        if module is not None:
            try:
                return GpuDecoder(module, cpu)
            except Exception:  # noqa: BLE001 - no device or driver: decode on the CPU
                pass
    return cpu
