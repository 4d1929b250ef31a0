"""Phase congruency and its principal moments (Kovesi's PC_2 measure), as the MFIF benchmark
toolbox's ``myphasecong3.m`` computes them for Q_P (:mod:`gipc.metrics.qp`).

Phase congruency is high where the Fourier components of an image are in phase (edges, lines,
corners), whatever their contrast: it is the feature map Q_P compares. The image is filtered in the
frequency domain by log-Gabor filters, 4 scales (wavelengths 3, 6.3, 13.2, 27.8 px) x 6
orientations; per orientation the responses' agreement with their weighted mean phase, less a noise
threshold estimated from the smallest scale, weighted by how widely the scales respond, gives PC
per orientation; their sum over the summed amplitudes gives PC, and the covariance of the
orientations' PC gives the maximum and minimum moments (edge and corner strength).

Ported as the toolbox has it, quirks included: its ``lowpassfilter`` centres on ``fftshift`` (off
by one pixel on an odd side), the frequency grid of an odd side is divided by its length less one,
filtering is circular (FFT), the noise's median is Matlab's (the mean of the two middle values).
Where every filter response is exactly 0 (a flat image) an orientation's PC, 0 / 0 there, is 0.
"""

from __future__ import annotations

import math

import torch

from gipc.metrics.base import ratio

SCALES, ORIENTATIONS = 4, 6  # nscale, norient
MIN_WAVELENGTH, MULT = 3.0, 2.1  # the smallest filter's wavelength (px) and the ratio between scales
SIGMA_ON_F = 0.55  # the log-Gabor's bandwidth: its Gaussian's sigma over the centre frequency
D_THETA_ON_SIGMA = 1.2  # the orientations' spacing over the angular Gaussian's sigma
NOISE_K = 2.0  # noise threshold: mean + k sigma of the noise energy
NOISE_PC2 = 1.7  # the threshold's empirical rescaling for PC_2
CUT_OFF, GAIN = 0.5, 10.0  # frequency spread below which PC is penalised, the sigmoid's sharpness
EPSILON = 1e-4
HELD_PIXELS = 1 << 21
"""Images up to this many pixels keep an orientation's four responses between their two reads (128 MB
at this size); larger ones filter them again (:func:`phase_congruency`). A 520x520 Lytro pair's Q_P:
395 ms, against 490 ms filtering twice."""
LOWPASS_CUTOFF, LOWPASS_ORDER = 0.45, 15  # the Butterworth low pass every log-Gabor is multiplied by


def _grid(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``myphasecong3``'s normalised frequencies along one side: ±0.5, divided by n - 1 on an odd side."""
    if n % 2:
        return (torch.arange(n, dtype=dtype, device=device) - (n - 1) / 2) / (n - 1)
    return (torch.arange(n, dtype=dtype, device=device) - n / 2) / n


def _lowpass(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The toolbox's ``lowpassfilter([rows, cols], 0.45, 15)``, ``fftshift``-ed as it is."""
    x = (torch.arange(cols, dtype=dtype, device=device) - cols // 2) / cols
    y = (torch.arange(rows, dtype=dtype, device=device) - rows // 2) / rows
    radius = torch.sqrt(x[None, :] ** 2 + y[:, None] ** 2)
    return torch.fft.fftshift(1.0 / (1.0 + (radius / LOWPASS_CUTOFF) ** (2 * LOWPASS_ORDER)))


class LogGabor:
    """The log-Gabor filters of one image size, built once for every image of that size: the radial
    components (SCALES, H, W) and the sine and cosine of each frequency's angle (H, W), zero
    frequency at [0, 0], and each orientation's noise gain (ORIENTATIONS,). A filter is its scale's
    radial component times its orientation's angular spread, made one at a time (a 12 MP image's
    24 would take 2.3 GB)."""

    def __init__(self, rows: int, cols: int, device: torch.device | None = None) -> None:
        dtype = torch.float64
        x, y = _grid(cols, dtype, device)[None, :], _grid(rows, dtype, device)[:, None]
        radius = torch.sqrt(x**2 + y**2)
        radius[rows // 2, cols // 2] = 1.0  # no log(0); the zero frequency is set to 0 below
        theta = torch.fft.ifftshift(torch.atan2(-y, x))
        radius = torch.fft.ifftshift(radius)
        wavelengths = MIN_WAVELENGTH * MULT ** torch.arange(SCALES, dtype=dtype, device=device)
        self.radial = torch.exp(-torch.log(radius * wavelengths.view(-1, 1, 1)) ** 2 / (2 * math.log(SIGMA_ON_F) ** 2))
        self.radial *= _lowpass(rows, cols, dtype, device)
        self.radial[:, 0, 0] = 0.0
        self.sin, self.cos = torch.sin(theta), torch.cos(theta)
        radial_sum = self.radial.sum(dim=0)
        self.gains = torch.stack([_noise_gain(radial_sum * spread, self.radial[0] * spread) for spread in map(self.spread, range(ORIENTATIONS))])

    def spread(self, orientation: int) -> torch.Tensor:
        """The (H, W) angular component of one orientation's filters: a Gaussian of the angular distance."""
        angle = orientation * math.pi / ORIENTATIONS
        distance = torch.atan2(self.sin * math.cos(angle) - self.cos * math.sin(angle), self.cos * math.cos(angle) + self.sin * math.sin(angle)).abs()
        return torch.exp(-(distance**2) / (2 * (math.pi / ORIENTATIONS / D_THETA_ON_SIGMA) ** 2))


def matlab_median(x: torch.Tensor) -> torch.Tensor:
    """Matlab's median of all of ``x``'s values: the mean of the two middle ones for an even count."""
    flat = x.flatten()
    n = flat.numel()
    low = flat.median()  # the lower middle value
    if n % 2 or (flat <= low).sum() > n // 2:
        return low
    return (low + flat[flat > low].min()) / 2


def _noise_gain(summed: torch.Tensor, smallest: torch.Tensor) -> torch.Tensor:
    """How one orientation's filters carry the noise power measured at the smallest scale into the
    energy: sum(An^2) + 2 sum(Ai Aj) of the scales' real impulse responses (scaled to the filters'
    power), the square of their sum (the impulse response of the ``summed`` filters), over the
    ``smallest`` scale's filter's power."""
    rows, cols = summed.shape
    impulse = torch.fft.ifft2(summed).real * math.sqrt(rows * cols)
    return (impulse**2).sum() / (smallest**2).sum()


def _noise_threshold(first_amplitude: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """The energy an orientation's noise reaches: its squared amplitude at the smallest scale taken
    as chi-squared (its mean from the median), carried through the filters as a Rayleigh
    distribution's mean + k sigma, rescaled for PC_2."""
    mean_square = -matlab_median(first_amplitude**2) / math.log(0.5)
    tau = torch.sqrt(mean_square * gain)  # the noise energy's Rayleigh parameter
    return (tau * math.sqrt(math.pi / 2) + NOISE_K * torch.sqrt((2 - math.pi / 2) * tau**2)) / NOISE_PC2


def _filtered(spectrum: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The complex response (even + i odd) of the image whose ``spectrum`` is given to one real
    filter: the product through the spectrum's real view (torch would make a complex copy of the
    filter first, twice the time)."""
    return torch.fft.ifft2(torch.view_as_complex(torch.view_as_real(spectrum) * scale[..., None]))


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    """|x| of a complex tensor as the norm of its real view (a third of ``abs``'s time; the same to an ulp)."""
    return torch.linalg.vector_norm(torch.view_as_real(x), dim=-1)


def phase_congruency(image: torch.Tensor, filters: LogGabor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PC, maximum and minimum moment, each (H, W), of one (H, W) float64 image on 0..255
    (``filters``: its size's, built here when not given).

    Each orientation's scale responses are read twice, for their sum and amplitudes and for their
    deviation from the mean phase. Up to :data:`HELD_PIXELS` they are kept between the two; above,
    filtered again, so that one is held at a time (a 12 MP image's four are 0.8 GB): there an inverse
    FFT costs less than the memory traffic of keeping them.
    """
    filters = filters or LogGabor(*image.shape, image.device)
    spectrum = torch.fft.fft2(image)
    total_energy, total_amplitude = torch.zeros_like(image), torch.zeros_like(image)
    cov_x2, cov_y2, cov_xy = torch.zeros_like(image), torch.zeros_like(image), torch.zeros_like(image)
    hold = image.numel() <= HELD_PIXELS  # keep the responses between their two reads
    for o in range(ORIENTATIONS):
        spread = filters.spread(o)
        total, sum_amplitude, max_amplitude = torch.zeros_like(spectrum), torch.zeros_like(image), torch.zeros_like(image)
        held = []
        for s, radial in enumerate(filters.radial):
            response = _filtered(spectrum, radial * spread)
            if hold:
                held.append(response)
            amplitude = _magnitude(response)
            if s == 0:
                threshold = _noise_threshold(amplitude, filters.gains[o])
            total += response
            sum_amplitude += amplitude
            torch.maximum(max_amplitude, amplitude, out=max_amplitude)
        # sum over scales of (E, O) . mean phase, where the mean phase is total / (|total| + eps) ...
        magnitude = _magnitude(total)
        energy = magnitude**2 / (magnitude + EPSILON)
        mean_phase = total.conj_physical() / (magnitude + EPSILON)
        del total, magnitude
        for s, radial in enumerate(filters.radial):  # ... less |(E, O) x mean phase|
            response = held[s] if hold else _filtered(spectrum, radial * spread)
            energy -= (response * mean_phase).imag.abs()
        del mean_phase, held, response
        energy = torch.clamp(energy - threshold, min=0.0)
        weighted = energy / (1.0 + torch.exp((CUT_OFF - sum_amplitude / (max_amplitude + EPSILON) / SCALES) * GAIN))
        total_energy += weighted
        total_amplitude += sum_amplitude
        pc = ratio(weighted, sum_amplitude, 0.0)
        angle = o * math.pi / ORIENTATIONS
        cov_x, cov_y = pc * math.cos(angle), pc * math.sin(angle)
        cov_x2 += cov_x**2
        cov_y2 += cov_y**2
        cov_xy += cov_x * cov_y
    cov_x2, cov_y2, cov_xy = cov_x2 / (ORIENTATIONS / 2), cov_y2 / (ORIENTATIONS / 2), cov_xy / ORIENTATIONS
    spread = torch.sqrt(cov_xy**2 + (cov_x2 - cov_y2) ** 2) + EPSILON
    return total_energy / (total_amplitude + EPSILON), (cov_y2 + cov_x2 + spread) / 2, (cov_y2 + cov_x2 - spread) / 2
