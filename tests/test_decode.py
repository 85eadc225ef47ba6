"""Decoders (harness.decode): compressed pixel data decoded in worker processes or by nvImageCodec
gives exactly the values of an in-thread decode, errors included; the runner's predictions on a
JPEG 2000 set are the same whichever decoder it uses."""

from __future__ import annotations

import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import JPEG2000Lossless, RLELossless
from vendors.mgfactory import make_mg, write_package, write_set

from harness import pixels
from harness.cases.manifest import load_manifest
from harness.decode import (
    DecodeCrash,
    GpuDecoder,
    LockedDecoder,
    ProcessDecoder,
    nvimgcodec_module,
    open_decoder,
)
from harness.executor import LocalExecutor
from harness.perturb.image import set_transfer_syntax
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter


def _stored(tmp_path: Path, name: str, syntax=None, bits: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 2**bits, (300, 220)).astype(np.uint16)
    ds = make_mg(img, bits=bits)
    if syntax is not None:
        ds.compress(syntax, encoding_plugin="pylibjpeg")
    ds.save_as(tmp_path / name, enforce_file_format=True)
    return dcmread(tmp_path / name), img


def die_decoding(module):
    """A decode that kills its process, as a crash inside OpenJPEG would."""
    os._exit(3)


@pytest.fixture(scope="module")
def pool():
    decoder = ProcessDecoder(2, min_pixels=0)  # the test images are small
    yield decoder
    decoder.close()


@pytest.mark.parametrize(
    ("syntax", "bits"), [(JPEG2000Lossless, 12), (JPEG2000Lossless, 16), (RLELossless, 12)]
)
def test_a_decoder_process_gives_the_in_thread_values(tmp_path, pool, syntax, bits):
    ds, img = _stored(tmp_path, "c.dcm", syntax, bits)
    before = pool.sent
    out = pool(ds)
    assert pool.sent == before + 1
    fresh = dcmread(tmp_path / "c.dcm").pixel_array
    assert out.dtype == fresh.dtype and np.array_equal(out, fresh) and np.array_equal(out, img)


def test_uncompressed_and_small_images_stay_in_the_calling_thread(tmp_path):
    ds, img = _stored(tmp_path, "u.dcm")
    small, img2 = _stored(tmp_path, "s.dcm", JPEG2000Lossless)
    decoder = ProcessDecoder(2, min_pixels=ds.Rows * ds.Columns + 1)
    try:
        assert np.array_equal(decoder(ds), img) and np.array_equal(decoder(small), img2)
        assert decoder.sent == 0 and decoder._pool is None  # no process was started
    finally:
        decoder.close()


def test_a_broken_codestream_fails_as_it_does_in_thread(tmp_path, pool):
    ds, _ = _stored(tmp_path, "b.dcm", JPEG2000Lossless)
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([frame[: len(frame) // 4]])
    ds.save_as(tmp_path / "b.dcm", enforce_file_format=True)
    with pytest.raises(Exception) as here:
        LockedDecoder()(dcmread(tmp_path / "b.dcm"))
    with pytest.raises(Exception) as there:
        pool(dcmread(tmp_path / "b.dcm"))
    assert (type(there.value), str(there.value)) == (type(here.value), str(here.value))


def test_a_dead_decoder_process_fails_its_image_and_the_next_one_decodes(tmp_path):
    ds, img = _stored(tmp_path, "d.dcm", JPEG2000Lossless)
    decoder = ProcessDecoder(1, decode=die_decoding, min_pixels=0)
    try:
        with pytest.raises(DecodeCrash, match="decoder process died"):
            decoder(ds)
        decoder.decode = ProcessDecoder().decode  # the real decode, in a fresh pool
        assert np.array_equal(decoder(ds), img)
    finally:
        decoder.close()


def test_without_nvimgcodec_a_cuda_run_decodes_in_processes(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia", None)  # import nvidia.nvimgcodec fails
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", None)
    assert nvimgcodec_module() is None
    decoder = open_decoder("CUDAExecutionProvider")
    assert isinstance(decoder, ProcessDecoder)
    decoder.close()
    assert isinstance(open_decoder("CPUExecutionProvider"), ProcessDecoder)


def test_a_cuda_run_decodes_on_the_gpu_when_nvimgcodec_starts(monkeypatch):
    module, _ = _fake_nvimgcodec()
    monkeypatch.setitem(sys.modules, "nvidia", types.SimpleNamespace(nvimgcodec=module))
    decoder = open_decoder("CUDAExecutionProvider")
    assert isinstance(decoder, GpuDecoder) and isinstance(decoder.fallback, ProcessDecoder)
    decoder.close()
    assert isinstance(open_decoder("CPUExecutionProvider"), ProcessDecoder)  # CPU model: CPU

    def no_device():
        raise RuntimeError("no CUDA device")

    module.Decoder = no_device
    assert isinstance(open_decoder("CUDAExecutionProvider"), ProcessDecoder)


def _fake_nvimgcodec(channel_dtype=None):
    """nvImageCodec's Python surface that this harness uses, decoding with OpenJPEG on the CPU."""
    from openjpeg import decode

    class Image:
        def __init__(self, arr):
            self.arr = arr

        def cpu(self):
            return self.arr

    class Decoder:
        calls = 0

        def decode(self, data, params=None):
            Decoder.calls += 1
            arr = decode(bytes(data))[:, :, None]
            return Image(arr.astype(channel_dtype) if channel_dtype else arr)

    module = types.SimpleNamespace(
        Decoder=Decoder,
        DecodeParams=lambda **kw: kw,
        ColorSpec=types.SimpleNamespace(UNCHANGED="unchanged"),
    )
    return module, Decoder


def test_the_gpu_decoder_returns_the_cpu_values_and_hands_the_rest_to_the_cpu(tmp_path, pool):
    module, codec = _fake_nvimgcodec()
    gpu = GpuDecoder(module, pool)
    j2k, img = _stored(tmp_path, "g.dcm", JPEG2000Lossless)
    rle, img2 = _stored(tmp_path, "r.dcm", RLELossless, seed=1)
    sent = pool.sent
    out = gpu(j2k)
    assert codec.calls == 1 and pool.sent == sent
    assert out.dtype == np.uint16 and np.array_equal(out, img)
    assert np.array_equal(gpu(rle), img2) and pool.sent == sent + 1  # RLE: the CPU's
    module, codec = _fake_nvimgcodec(np.int32)  # an array the CPU would not give: CPU decides
    assert np.array_equal(GpuDecoder(module, pool)(j2k), img) and pool.sent == sent + 2


@pytest.fixture(scope="module")
def j2k_set(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("j2kset")
    plain = write_set(root / "plain", n=4)
    j2k = root / "j2k"
    shutil.copytree(plain, j2k)
    for path in sorted(j2k.glob("*/*.dcm")):
        ds = dcmread(path)
        set_transfer_syntax(ds, JPEG2000Lossless)
        ds.save_as(path, enforce_file_format=True)
    return plain, j2k


def test_the_runner_predicts_the_same_on_a_jpeg2000_set_with_either_decoder(tmp_path, j2k_set):
    plain, j2k = j2k_set
    adapter = open_adapter(load_vendor_package(write_package(tmp_path / "pkg")))
    try:
        runs = {}
        for name, cases, decoder in [
            ("plain", plain, LockedDecoder()),
            ("lock", j2k, LockedDecoder()),
            ("pool", j2k, ProcessDecoder(2, min_pixels=0)),
        ]:
            preds = run_predictions(
                adapter,
                load_manifest(cases),
                progress=False,
                timeout_s=None,
                executor=LocalExecutor(2, decoder=decoder),
            )
            runs[name] = [(p.exam_id, p.status, p.score, p.breasts, p.findings) for p in preds]
            assert pixels._decoder is None  # the run's decoder is uninstalled when it ends
            if isinstance(decoder, ProcessDecoder):
                assert decoder.sent == 16  # 4 exams x 4 views, all in the processes
                decoder.close()
        assert runs["pool"] == runs["lock"] == runs["plain"]
        assert all(run[1] == "ok" for run in runs["pool"])
    finally:
        adapter.close()
