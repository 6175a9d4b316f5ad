"""Independent torch.fft references for the low-frequency ops (written from the definition, in float64)."""

import torch


def band_indices(n: int, b: int) -> list[int]:
    """Unshifted FFT indices of the kept band: 0..ceil(b/2)-1 and -floor(b/2)..-1."""
    return list(range(0, (b + 1) // 2)) + list(range(n - b // 2, n))


def ref_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    bh, bw = size
    h, w = x.shape[-2:]
    spec = torch.fft.fft2(x.double())
    kept = spec[..., band_indices(h, bh), :][..., band_indices(w, bw)]
    return torch.fft.ifft2(kept).real * (bh * bw) / (h * w)


def ref_freq_crop_efficienttrain(x: torch.Tensor, b: int) -> torch.Tensor:
    """EfficientTrain's reference: four corners of the unshifted spectrum, scaled by (B/N)^2, even B only."""
    n = x.shape[-1]
    spec = torch.fft.fft2(x.double())
    h = b // 2
    top = torch.cat([spec[..., :h, :h], spec[..., :h, n - h :]], dim=-1)
    bottom = torch.cat([spec[..., n - h :, :h], spec[..., n - h :, n - h :]], dim=-1)
    out = torch.fft.ifft2(torch.cat([top, bottom], dim=-2)).real
    return out * (b / n) ** 2


def ref_lowpass(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Band-limited spectral up-sampling of the crop: zero-pad the crop's spectrum, splitting a Nyquist bin."""
    bh, bw = size
    h, w = x.shape[-2:]
    y = ref_crop(x, size)
    spec = torch.fft.fft2(y)
    full = torch.zeros(*spec.shape[:-2], h, w, dtype=spec.dtype)

    def axis_map(n, b):
        # (source index in the b-spectrum, destination index in the n-spectrum, weight)
        out = []
        for k in range(b):
            f = k if k < (b + 1) // 2 else k - b
            if b % 2 == 0 and f == -(b // 2) and b < n:
                out.append((k, n - b // 2, 0.5))
                out.append((k, b // 2, 0.5))
            else:
                out.append((k, f % n, 1.0))
        return out

    for ks, kd, wr in axis_map(h, bh):
        for ls, ld, wc in axis_map(w, bw):
            full[..., kd, ld] += spec[..., ks, ls] * (wr * wc)
    return torch.fft.ifft2(full).real * (h * w) / (bh * bw)
