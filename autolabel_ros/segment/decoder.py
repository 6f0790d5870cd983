"""SAM's mask decoder for a batch of prompts on one image, without the per-prompt copies of the image.

The library's decoder repeats the 64 x 64 image embedding and its positional encoding once per
prompt and projects every copy. Until the first image-to-token attention, the image side is the same
for every prompt (the dense prompt embedding is the one "no mask" vector when no mask is given), so
here its projections are computed once and broadcast; from the first update of the image tokens on,
the library's own layers run unchanged. The result equals ``MaskDecoder.forward`` up to float
rounding (test/test_segment.py). Any SAM-family model with segment-anything's two-way transformer
(MobileSAM, ViT-B/L/H) works.
"""
from __future__ import annotations

import math

GRID = 64          # tokens per side of SAM's image embedding
TOKEN_PX = 16      # input pixels per token
LOW_SCALE = 4      # input pixels per low-resolution mask logit (256 x 256 for 1024 px)


def _heads(x, n: int):
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _attend(attn, q, k, v):
    """The library's ``Attention.forward`` on already projected q, k, v (batch dims broadcast)."""
    import torch

    n = attn.num_heads
    q, k, v = _heads(q, n), _heads(k, n), _heads(v, n)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    out = w @ v
    b, _, t, c = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, n * c))


def _first_block(layer, queries, keys, query_pe, key_pe):
    """TwoWayAttentionBlock with ``skip_first_layer_pe`` for image tokens shared by the whole batch
    (``keys``, ``key_pe``: (1, N, C)); returns per-prompt queries and keys."""
    queries = layer.norm1(layer.self_attn(q=queries, k=queries, v=queries))
    image_k = keys + key_pe
    a = layer.cross_attn_token_to_image
    queries = layer.norm2(queries + _attend(a, a.q_proj(queries + query_pe), a.k_proj(image_k),
                                            a.v_proj(keys)))
    queries = layer.norm3(queries + layer.mlp(queries))
    a = layer.cross_attn_image_to_token
    tokens = queries + query_pe
    keys = layer.norm4(keys + _attend(a, a.q_proj(image_k), a.k_proj(tokens), a.v_proj(queries)))
    return queries, keys


def decode(model, features, sparse, multimask: bool, keep: tuple | None = None):
    """Low-resolution mask logits (B, M, 4h, 4w) and predicted IoUs (B, M) of ``sparse`` prompt
    embeddings (B, T, C) on ``features`` (1, C, h, w), no mask input; M = 3 with ``multimask``,
    else 1 (the library's selection). ``keep`` = (rows, cols): only the mask logits of the first
    rows x cols tokens (4 x 4 logits each) are computed: the upscaling (transposed 2x2 convolutions,
    per-pixel norm) is local, so they equal the corresponding part of the full ones."""
    import torch

    dec = model.mask_decoder
    pe = model.prompt_encoder.get_dense_pe()
    dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    b = sparse.shape[0]
    _, c, h, w = features.shape
    tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
    keys = (features + dense).flatten(2).transpose(1, 2)            # (1, N, C): one image for all
    key_pe = pe.flatten(2).transpose(1, 2)
    tf = dec.transformer
    queries, keys = _first_block(tf.layers[0], tokens, keys, tokens, key_pe)
    for layer in tf.layers[1:]:
        queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
    queries = tf.norm_final_attn(queries + tf.final_attn_token_to_image(q=queries + tokens,
                                                                       k=keys + key_pe, v=keys))
    iou_out = queries[:, 0, :]
    mask_out = queries[:, 1:1 + dec.num_mask_tokens, :]
    rows, cols = keep or (h, w)
    up = dec.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w)[..., :rows, :cols])
    hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)],
                        dim=1)
    bu, cu, hu, wu = up.shape
    masks = (hyper @ up.view(bu, cu, hu * wu)).view(bu, -1, hu, wu)
    iou = dec.iou_prediction_head(iou_out)
    pick = slice(1, None) if multimask else slice(0, 1)
    return masks[:, pick], iou[:, pick]


def needed_tokens(input_size: tuple) -> tuple:
    """Token rows and columns whose mask logits :func:`upscale` reads for an image of ``input_size``
    (resized, unpadded) pixels."""
    return tuple(min(GRID, math.ceil((math.ceil(n / LOW_SCALE) + 1) / (TOKEN_PX // LOW_SCALE)))
                 for n in input_size)


def upscale(low, input_size: tuple, original_size: tuple):
    """SAM's ``postprocess_masks``: low-resolution logits (the first rows/columns of SAM's 256 x 256,
    at least :func:`needed_tokens`) -> logits at the original image size. Only the rows and columns
    that hold the image are upsampled to the input grid (bilinear at the same integer scale, so the
    values are the library's); the padding is never interpolated."""
    import torch.nn.functional as F

    scale = LOW_SCALE
    rows = min(low.shape[-2], math.ceil(input_size[0] / scale) + 1)
    cols = min(low.shape[-1], math.ceil(input_size[1] / scale) + 1)
    x = F.interpolate(low[..., :rows, :cols], (rows * scale, cols * scale), mode='bilinear',
                      align_corners=False)
    x = x[..., :input_size[0], :input_size[1]]
    return F.interpolate(x, original_size, mode='bilinear', align_corners=False)
