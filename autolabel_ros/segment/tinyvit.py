"""MobileSAM's TinyViT image encoder on the image's own rows instead of SAM's 1024 x 1024 square.

SAM resizes the long side to 1024 and pads the rest: a KITTI image (1242 x 375 -> 1024 x 309) is
70 % padding, and the encoder spends 70 % of its time there. TinyViT has no global attention (3x3
convolutions and attention in fixed, top-left aligned windows), so the encoder can run on the image
plus a margin of padding, cut at a window boundary, and the tokens beyond the cut are taken from the
embedding of an empty image (all padding), computed once per model. The mask decoder, which attends
over all 64 x 64 tokens, then sees an embedding close to SAM's own: measured on the 12 KITTI
development frames (37 GT boxes), mask IoU against the full-square masks is at the level of a
1-pixel jitter of the prompt boxes (docs/MODELS_USED.md).

The encoder's Conv2d + BatchNorm pairs are folded into single convolutions once at load
(:func:`fold_batchnorm`), for this path and the full-square one.
"""
from __future__ import annotations

import math

TOKEN_PX = 16        # input pixels per embedding token (the encoder downsamples by 16)
GRID = 64            # tokens per side of SAM's embedding (1024 px)
WINDOW = 14          # tokens per attention window of TinyViT's widest stage; cuts fall on multiples


def is_tinyvit(encoder) -> bool:
    """MobileSAM's encoder (the one this module knows); SAM's ViT-B/L/H use global attention."""
    return type(encoder).__name__ == 'TinyViT' and hasattr(encoder, 'layers') and hasattr(encoder, 'neck')


def fold_batchnorm(module) -> int:
    """Replace every TinyViT ``Conv2d_BN`` (conv + eval-mode batch norm) below ``module`` by the one
    convolution it equals; returns how many were folded. Call before moving the model to a device
    (the library's fold builds the new convolution on the CPU)."""
    n = 0
    for name, child in list(module.named_children()):
        if type(child).__name__ == 'Conv2d_BN' and hasattr(child, 'fuse'):
            setattr(module, name, child.fuse())
            n += 1
        else:
            n += fold_batchnorm(child)
    return n


def crop_tokens(size: int, margin: int) -> int:
    """Tokens to encode along one side of ``size`` input pixels: the image, at least ``margin`` tokens
    of padding, rounded up to whole attention windows; the full grid when that reaches it or when
    ``margin < 0``."""
    if margin < 0:
        return GRID
    need = math.ceil(size / TOKEN_PX) + margin
    return min(GRID, math.ceil(need / WINDOW) * WINDOW)


def _block(blk, x, H: int, W: int):
    """One TinyViTBlock at an explicit resolution (the library's reads a fixed one from the block)."""
    import torch.nn.functional as F

    B, L, C = x.shape
    ws = blk.window_size
    res = x
    if H == ws and W == ws:
        x = blk.attn(x)
    else:
        x = x.view(B, H, W, C)
        pb, pr = (ws - H % ws) % ws, (ws - W % ws) % ws
        if pb or pr:
            x = F.pad(x, (0, 0, 0, pr, 0, pb))
        pH, pW = H + pb, W + pr
        nH, nW = pH // ws, pW // ws
        x = x.view(B, nH, ws, nW, ws, C).transpose(2, 3).reshape(B * nH * nW, ws * ws, C)
        x = blk.attn(x)
        x = x.view(B, nH, nW, ws, ws, C).transpose(2, 3).reshape(B, pH, pW, C)
        if pb or pr:
            x = x[:, :H, :W].contiguous()
        x = x.view(B, L, C)
    x = res + x
    x = blk.local_conv(x.transpose(1, 2).reshape(B, C, H, W))
    x = x.view(B, C, L).transpose(1, 2)
    return x + blk.mlp(x)


def _merge(m, x, H: int, W: int):
    """PatchMerging at an explicit resolution; returns the tokens and their new grid."""
    if x.ndim == 3:
        x = x.view(len(x), H, W, -1).permute(0, 3, 1, 2)
    x = m.act(m.conv1(x))
    x = m.act(m.conv2(x))
    x = m.conv3(x)
    h, w = x.shape[-2:]
    return x.flatten(2).transpose(1, 2), h, w


def encode(encoder, x):
    """TinyViT's forward for an input of any size that is a multiple of 16 px: (B, 3, h, w) normalised
    and padded like SAM's -> (B, 256, h / 16, w / 16). On the 1024 x 1024 square it equals the
    library's ``encoder(x)``."""
    x = encoder.patch_embed(x)
    H, W = x.shape[-2:]
    first = encoder.layers[0]                 # MBConv stage: plain convolutions, any size
    for blk in first.blocks:
        x = blk(x)
    x, H, W = _merge(first.downsample, x, H, W)
    for layer in encoder.layers[1:]:
        for blk in layer.blocks:
            x = _block(blk, x, H, W)
        if layer.downsample is not None:
            x, H, W = _merge(layer.downsample, x, H, W)
    B, _, C = x.shape
    return encoder.neck(x.view(B, H, W, C).permute(0, 3, 1, 2))


# the empty image's embedding per (weights key, device, dtype), shared by the segmenters of a process
_EMPTY: dict = {}


class CroppedEmbedder:
    """SAM's 64 x 64 embedding of a resized image from the encoder run on the image plus ``margin``
    tokens of padding (see the module docstring); ``margin < 0`` runs the full square. ``key`` names
    the weights (e.g. the checkpoint path and its mtime): encoders with one key share the empty
    image's embedding (one full-square pass per process, at the first cropped image)."""

    def __init__(self, encoder, margin: int, key=None):
        self.encoder = encoder
        self.margin = int(margin)
        self.key = key if key is not None else id(encoder)

    def empty(self, like):
        """The embedding of an all-padding input (zeros after normalisation), computed once."""
        k = (self.key, str(like.device), like.dtype)
        if k not in _EMPTY:
            import torch

            size = GRID * TOKEN_PX
            _EMPTY[k] = encode(self.encoder, torch.zeros(1, 3, size, size, dtype=like.dtype,
                                                         device=like.device))
        return _EMPTY[k]

    def __call__(self, x):
        """``x``: (1, 3, h, w) normalised, unpadded, long side 1024 -> (1, 256, 64, 64)."""
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        rows, cols = crop_tokens(h, self.margin), crop_tokens(w, self.margin)
        x = F.pad(x, (0, cols * TOKEN_PX - w, 0, rows * TOKEN_PX - h))
        emb = encode(self.encoder, x)
        if rows == GRID and cols == GRID:
            return emb
        out = self.empty(x).clone()
        out[..., :rows, :cols] = emb
        return out
