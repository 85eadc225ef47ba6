"""Manufacturer profiles: detector geometry, stored-pixel format and vendor "For Presentation" processing.

Different vendors' images differ in pixel pitch, matrix, bit depth, photometric interpretation,
windowing and image processing; a certifier must test per manufacturer (research notes B.2/B.4).
The numbers below are the published detector pitches (Hologic 70 µm, GE 100 µm, Siemens 85 µm)
and matrices of the common full-field units; processing parameters are illustrative and chosen
so that the three profiles look visibly different, as real vendor processing does.
"""

from __future__ import annotations

from dataclasses import dataclass

# The CI-sized images keep the whole detector field but sample it with a coarser pitch, so that
# every breast fits and the image is CI_ROWS high (the vendor.yaml example's 512 x 416).
CI_ROWS = 512


@dataclass(frozen=True)
class DeviceProfile:
    """One manufacturer's detector and presentation processing."""

    manufacturer: str
    model: str
    pixel_spacing_mm: float  # native detector pitch
    rows: int  # native matrix (rows = chest-wall direction, i.e. image height)
    cols: int
    bits_stored: int
    photometric: str  # MONOCHROME1 (dense = dark stored value) or MONOCHROME2
    voi_lut_function: str  # LINEAR | SIGMOID
    detector_type: str  # DIRECT (a-Se) | SCINTILLATOR (CsI/a-Si)
    periphery_equalisation: float  # fraction of the thickness fall-off compensated
    unsharp_amount: float  # multiscale contrast enhancement, as one unsharp-mask band
    unsharp_sigma_mm: float
    gamma: float  # tone curve applied to the normalised log image
    output_range: tuple[float, float]  # breast values mapped into this fraction of full scale

    def geometry(self, size: str) -> tuple[int, int, float]:
        """(rows, cols, pixel spacing mm) for ``size`` ``ci`` or ``full``."""
        if size == "full":
            return self.rows, self.cols, self.pixel_spacing_mm
        spacing = round(self.pixel_spacing_mm * self.rows / CI_ROWS, 6)
        cols = int(round(self.cols * CI_ROWS / self.rows))
        return CI_ROWS, cols, spacing

    @property
    def max_value(self) -> int:
        return (1 << self.bits_stored) - 1


PROFILES: dict[str, DeviceProfile] = {
    "HOLOGIC": DeviceProfile(
        manufacturer="HOLOGIC, Inc.",
        model="Selenia Dimensions",
        pixel_spacing_mm=0.07,
        rows=4096,
        cols=3328,
        bits_stored=12,
        photometric="MONOCHROME2",
        voi_lut_function="LINEAR",
        detector_type="DIRECT",
        periphery_equalisation=0.85,
        unsharp_amount=0.6,
        unsharp_sigma_mm=2.0,
        gamma=1.0,
        output_range=(0.18, 0.97),
    ),
    "GE": DeviceProfile(
        manufacturer="GE MEDICAL SYSTEMS",
        model="Senographe Essential",
        pixel_spacing_mm=0.1,
        rows=3062,
        cols=2394,
        bits_stored=14,
        photometric="MONOCHROME1",
        voi_lut_function="SIGMOID",
        detector_type="SCINTILLATOR",
        periphery_equalisation=0.7,
        unsharp_amount=0.9,
        unsharp_sigma_mm=3.0,
        gamma=0.85,
        output_range=(0.12, 0.92),
    ),
    "SIEMENS": DeviceProfile(
        manufacturer="SIEMENS",
        model="Mammomat Inspiration",
        pixel_spacing_mm=0.085,
        rows=3584,
        cols=2816,
        bits_stored=12,
        photometric="MONOCHROME2",
        voi_lut_function="LINEAR",
        detector_type="DIRECT",
        periphery_equalisation=0.95,
        unsharp_amount=0.4,
        unsharp_sigma_mm=1.5,
        gamma=1.15,
        output_range=(0.22, 0.95),
    ),
}

#: Short names a recipe may use, in a fixed order (iteration order is part of determinism).
MANUFACTURERS = tuple(PROFILES)
