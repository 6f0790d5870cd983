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
(:func:`fold_batchnorm`), for this path and the full-square one. On a CPU with bfloat16 matrix
units (AMX) the encoder can run in bfloat16 with channels-last activations (:func:`to_bfloat16`):
2-2.5x fewer CPU seconds; the embedding moves by ~2 % (relative norm), the masks by less than a
1-pixel jitter of the prompt boxes (docs/MODELS_USED.md). The decoder stays float32.
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


def bfloat16_is_fast() -> bool:
    """This CPU has AMX tiles for bfloat16 (Intel Sapphire Rapids and later): oneDNN then runs
    bfloat16 convolutions and matrix products 2-3x faster than float32. Without them bfloat16 is
    emulated and slower than float32."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported())
    except AttributeError:                    # private helpers of this torch version; assume no
        return False


def to_bfloat16(encoder) -> None:
    """Cast the encoder's weights to bfloat16 and its convolution weights to channels-last, in place:
    oneDNN's fast bfloat16 kernels want NHWC (bfloat16 in NCHW gains little, channels-last in float32
    ~15 %). :func:`encode` keeps the activations channels-last (its token views already are)."""
    import torch

    encoder.to(dtype=torch.bfloat16, memory_format=torch.channels_last)


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
    the weights (e.g. the checkpoint path and its mtime): encoders with one key and dtype share the
    empty image's embedding (one full-square pass per process, at the first cropped image). The
    encoder runs in the dtype of its weights (float32, or bfloat16 after :func:`to_bfloat16`); the
    embedding is returned as float32."""

    def __init__(self, encoder, margin: int, key=None):
        self.encoder = encoder
        self.margin = int(margin)
        self.key = key if key is not None else id(encoder)
        self.dtype = next(encoder.parameters()).dtype

    def _encode(self, x):
        import torch

        if self.dtype != torch.float32:
            x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return encode(self.encoder, x).float().contiguous()

    def empty(self, like):
        """The embedding of an all-padding input (zeros after normalisation), computed once."""
        k = (self.key, str(like.device), self.dtype)
        if k not in _EMPTY:
            import torch

            size = GRID * TOKEN_PX
            _EMPTY[k] = self._encode(torch.zeros(1, 3, size, size, dtype=like.dtype, device=like.device))
        return _EMPTY[k]

    def __call__(self, x):
        """``x``: (1, 3, h, w) normalised, unpadded, long side 1024 -> (1, 256, 64, 64)."""
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        rows, cols = crop_tokens(h, self.margin), crop_tokens(w, self.margin)
        x = F.pad(x, (0, cols * TOKEN_PX - w, 0, rows * TOKEN_PX - h))
        emb = self._encode(x)
        if rows == GRID and cols == GRID:
            return emb
        out = self.empty(x).clone()
        out[..., :rows, :cols] = emb
        return out
