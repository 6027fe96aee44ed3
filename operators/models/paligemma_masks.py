"""PaliGemma's mask decoder: the VQ-VAE that turns 16 ``<segNNN>`` codebook indices into a 64x64 mask.

The architecture is big_vision's (``paligemma`` segmentation, checkpoint ``vae-oid.npz``): 128 codes of
512 dims looked up into a 4x4 grid, a 1x1 conv to 128 channels, two residual blocks, four stride-2
transposed convs (128, 64, 32, 16 channels: 4x4 -> 64x64) and a 1x1 conv to one channel; a pixel is
inside where the output is above 0. Parameter names follow the published checkpoint
(``_vq_vae._embedding``, ``decoder.N.weight`` in PyTorch layout), so its npz loads as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

__all__ = ["MASK_SIDE", "VQMaskDecoder", "decode_masks", "load_mask_decoder"]

MASK_SIDE = 64


class _ResBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1),
                                 nn.ReLU(), nn.Conv2d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class _Codebook(nn.Module):
    def __init__(self, codes: int, dim: int) -> None:
        super().__init__()
        self._embedding = nn.Parameter(torch.zeros(codes, dim))


class VQMaskDecoder(nn.Module):
    """Codebook indices ``[M, 16]`` -> mask logits ``[M, 64, 64]`` (inside where > 0)."""

    def __init__(self, codes: int = 128, embed_dim: int = 512, dim: int = 128) -> None:
        super().__init__()
        self._vq_vae = _Codebook(codes, embed_dim)
        layers: list[nn.Module] = [nn.Conv2d(embed_dim, dim, 1), nn.ReLU(), _ResBlock(dim), _ResBlock(dim)]
        cin = dim
        for cout in (dim, dim // 2, dim // 4, dim // 8):
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.ReLU()]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        m = codes.shape[0]
        emb = self._vq_vae._embedding[codes.reshape(-1)].reshape(m, 4, 4, -1).permute(0, 3, 1, 2)
        return self.decoder(emb)[:, 0]


def load_mask_decoder(path: str | Path, device: Any = "cpu") -> VQMaskDecoder:
    """The decoder with the weights in ``path``: big_vision's ``vae-oid.npz``, or a ``.safetensors`` / ``.pt``
    state dict with the same names. A file that does not fit raises naming what is wrong."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"paligemma option mask_decoder={str(path)!r}: no such file; give the VQ-VAE "
                                "checkpoint (vae-oid.npz from big_vision), or drop the option to get box masks")
    if p.suffix == ".npz":
        with np.load(p) as z:
            state = {k: torch.from_numpy(np.asarray(z[k], np.float32)) for k in z.files}
    elif p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(p, map_location="cpu", weights_only=True)
    emb = state.get("_vq_vae._embedding")
    if emb is None:
        raise ValueError(f"{p} holds no '_vq_vae._embedding': not a PaliGemma VQ-VAE checkpoint")
    first = state.get("decoder.0.weight")
    dim = int(first.shape[0]) if first is not None else 128
    model = VQMaskDecoder(codes=int(emb.shape[0]), embed_dim=int(emb.shape[1]), dim=dim)
    wanted = model.state_dict()
    state = {k: v for k, v in state.items() if k in wanted or not k.startswith("encoder")}  # the encoder is unused
    missing = sorted(set(wanted) - set(state))
    shapes = sorted(k for k in wanted if k in state and tuple(state[k].shape) != tuple(wanted[k].shape))
    if missing or shapes:
        raise ValueError(f"{p} does not fit the PaliGemma VQ-VAE decoder: missing {missing[:3]}, "
                         f"mis-shaped {shapes[:3]}")
    model.load_state_dict({k: state[k] for k in wanted})
    return model.to(device).eval()


def decode_masks(decoder: VQMaskDecoder, codes: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Mask logits ``[M, 64, 64]`` of ``[M, 16]`` codebook indices (inside where > 0)."""
    c = np.asarray(codes, np.int64).reshape(-1, 16)
    if len(c) == 0:
        return np.zeros((0, MASK_SIDE, MASK_SIDE), np.float32)
    dev = decoder._vq_vae._embedding.device
    with torch.inference_mode():
        return decoder(torch.from_numpy(c).to(dev)).float().cpu().numpy()
