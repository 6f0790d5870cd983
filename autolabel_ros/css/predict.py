"""Run the CSS network on a frame's objects: one batched forward pass over their patches.

Each object's patch is the square around its instance mask's box (:mod:`autolabel_ros.core.nocs`);
the prediction keeps that window so LiDAR points projected into the image can look up their NOCS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from autolabel_ros.core.nocs import cut_patch, patch_window
from autolabel_ros.css.model import PATCH

PATCH_PAD = 1.2                 # patch side / longer mask-box side (the training windows: 1.05 .. 1.4)
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / 'data' / 'css_sim.pt'


@dataclass
class NocsPrediction:
    window: np.ndarray          # (x0, y0, side) of the patch in the image
    nocs: np.ndarray            # G x G x 3 predicted NOCS (G = PATCH / 2)
    valid: np.ndarray           # G x G bool: the instance mask on that grid
    dims: np.ndarray            # predicted (l, w, h) / diagonal

    def at_pixels(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """NOCS at N image points (u, v pixel coordinates, pixel-edge convention) and whether the
        point falls on the mask's grid cells."""
        g = self.nocs.shape[0]
        x0, y0, side = self.window
        i = np.floor((uv[:, 0] - x0) / side * g).astype(int)
        j = np.floor((uv[:, 1] - y0) / side * g).astype(int)
        inside = (i >= 0) & (i < g) & (j >= 0) & (j < g)
        ok = np.zeros(len(uv), bool)
        ok[inside] = self.valid[j[inside], i[inside]]
        out = np.zeros((len(uv), 3))
        out[ok] = self.nocs[j[ok], i[ok]]
        return out, ok

    def facing(self) -> float:
        """Which end faces the camera, from the mean NOCS x of the mask: +1 the front, -1 the rear,
        about 0 a side view (see :func:`autolabel_ros.css.cue.facing_from_nocs`)."""
        from autolabel_ros.css.cue import facing_from_nocs
        return facing_from_nocs(self.nocs, self.valid)


def mask_window(mask: np.ndarray, pad: float = PATCH_PAD) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return patch_window((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), pad)


def patch_input(image: np.ndarray, mask: np.ndarray, window) -> np.ndarray:
    """4 x P x P float32 network input: RGB in [0, 1] and the mask."""
    rgb = cut_patch(image, window, PATCH).astype(np.float32) / 255.0
    m = cut_patch(mask.astype(np.uint8), window, PATCH, cv2.INTER_NEAREST).astype(np.float32)
    return np.concatenate([rgb.transpose(2, 0, 1), m[None]], 0)


class CssPredictor:
    """The network with its weights (``weights``: a path, '' = the packaged simulator-trained file)."""

    def __init__(self, weights: str | Path = '', device='cpu'):
        from autolabel_ros.css.train import load_net
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f'css.weights: {path}: no such file')
        self.device = torch.device(device)
        self.net = load_net(path, self.device)

    @torch.no_grad()
    def predict(self, image: np.ndarray, masks: list[np.ndarray]) -> list[NocsPrediction | None]:
        """One prediction per mask (None for an empty mask)."""
        out: list[NocsPrediction | None] = [None] * len(masks)
        ok = [k for k, m in enumerate(masks) if m is not None and m.any()]
        if not ok:
            return out
        wins = [mask_window(masks[k]) for k in ok]
        x = torch.as_tensor(np.stack([patch_input(image, masks[k], w) for k, w in zip(ok, wins)]),
                            device=self.device)
        nocs, dims = self.net(x)
        valid = torch.nn.functional.avg_pool2d(x[:, 3:4], 2)[:, 0] > 0.49
        nocs, dims, valid = nocs.permute(0, 2, 3, 1).cpu().numpy(), dims.cpu().numpy(), valid.cpu().numpy()
        for i, k in enumerate(ok):
            out[k] = NocsPrediction(window=wins[i], nocs=nocs[i], valid=valid[i], dims=dims[i])
        return out
