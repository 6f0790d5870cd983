"""A CSS head on MobileSAM's image embedding (the issue's hint), beside the RGB U-Net of css/model.py.

The segmenter computes a 256 x 64 x 64 embedding of every frame anyway. This head reads the object's
patch window (:func:`autolabel_ros.core.nocs.patch_window`, the same square the U-Net sees) out of that
embedding by RoIAlign at 8 x 8, adds the instance mask on the same grid, and predicts the NOCS on
that 8 x 8 grid and the proportions. Its output is a :class:`~autolabel_ros.css.predict.NocsPrediction`
(coarser grid), so the front/back cue and RANSAC-Procrustes take it unchanged. Whether it beats the
U-Net is measured in ``benchmarks/css_embed_head.py`` (docs/SDFLABEL.md); measured, not shipped: it lives
beside its benchmark, outside the package.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from autolabel_ros.core.nocs import cut_patch

GRID = 8                        # RoI grid of the head (embedding cells are 16 resized pixels)
EMBED = 256                     # MobileSAM embedding channels
SAM_SIDE = 1024                 # SAM resizes the image's long side to this
TOKEN_PX = 16


class EmbedHead(nn.Module):
    """(B, 256 + 1, 8, 8) RoI features + mask -> (B, 3, 8, 8) NOCS in [0, 1], (B, 3) proportions."""

    def __init__(self, width: int = 96):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(EMBED + 1, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.nocs = nn.Conv2d(width, 3, 1)
        self.dims = nn.Linear(width, 3)
        self.width = width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return torch.sigmoid(self.nocs(h)), torch.sigmoid(self.dims(h.mean(dim=(2, 3))))


def roi_features(features: torch.Tensor, image_hw, windows: np.ndarray) -> torch.Tensor:
    """RoIAlign of the (1, 256, 64, 64) embedding of an H x W image at the windows (N x (x0, y0, side)
    in image pixels) -> (N, 256, 8, 8)."""
    from torchvision.ops import roi_align
    s = SAM_SIDE / max(image_hw) / TOKEN_PX          # image pixel -> embedding cell
    w = np.asarray(windows, np.float64).reshape(-1, 3)
    boxes = np.stack([np.zeros(len(w)), w[:, 0] * s, w[:, 1] * s, (w[:, 0] + w[:, 2]) * s,
                      (w[:, 1] + w[:, 2]) * s], 1)
    return roi_align(features.float(), torch.as_tensor(boxes, dtype=torch.float32), GRID,
                     spatial_scale=1.0, sampling_ratio=2, aligned=True)


def mask_grid(mask: np.ndarray, window) -> np.ndarray:
    """The instance mask's share of each 8 x 8 cell of the window."""
    m = cut_patch(mask.astype(np.uint8), window, 8 * GRID, cv2.INTER_NEAREST).astype(np.float32)
    return m.reshape(GRID, 8, GRID, 8).mean(axis=(1, 3))


def save_head(net: EmbedHead, path, meta: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': state, 'width': int(net.width), 'kind': 'embed_head',
                'meta': {k: str(v) for k, v in meta.items()}}, path)


def load_head(path, device='cpu') -> EmbedHead:
    blob = torch.load(path, map_location=device, weights_only=True)
    net = EmbedHead(int(blob['width']))
    net.load_state_dict(blob['state_dict'])
    return net.to(device).eval()


class EmbedCssPredictor:
    """Same interface as :class:`~autolabel_ros.css.predict.CssPredictor`; ``segmenter`` is the
    pipeline's MobileSAM (its embedding of the frame is reused when it already holds that image)."""

    def __init__(self, weights, segmenter):
        self.net = load_head(weights)
        self.segmenter = segmenter

    def embedding(self, image: np.ndarray) -> torch.Tensor:
        from autolabel_ros.core.device import torch_threads
        with torch_threads(self.segmenter.num_threads), torch.no_grad():
            self.segmenter._set_image(image)
        return self.segmenter._features

    @torch.no_grad()
    def predict(self, image: np.ndarray, masks: list):
        from autolabel_ros.css.predict import NocsPrediction, mask_window
        out = [None] * len(masks)
        ok = [k for k, m in enumerate(masks) if m is not None and np.any(m)]
        if not ok:
            return out
        wins = np.stack([mask_window(masks[k]) for k in ok])
        feats = roi_features(self.embedding(image), image.shape[:2], wins)
        mg = torch.as_tensor(np.stack([mask_grid(masks[k], w) for k, w in zip(ok, wins)]))[:, None]
        nocs, dims = self.net(torch.cat([feats, mg], 1))
        nocs = nocs.permute(0, 2, 3, 1).numpy()
        for i, k in enumerate(ok):
            out[k] = NocsPrediction(window=wins[i], nocs=nocs[i], valid=mg[i, 0].numpy() > 0.49,
                                    dims=dims[i].numpy())
        return out
