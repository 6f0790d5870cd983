"""Promptable segmenters (SAM family): prompts -> instance masks.

``make_segmenter(cfg.segmenter, device)`` is the entry point; torch is only imported when a SAM
model is built, so importing this package stays cheap.
"""
from __future__ import annotations

from autolabel_ros.segment.base import BoxSegmenter, Segmenter, SegmenterUnavailable

__all__ = ['Segmenter', 'SamSegmenter', 'BoxSegmenter', 'SegmenterUnavailable', 'make_segmenter',
           'find_mobile_sam_checkpoint']


def __getattr__(name):
    # SamSegmenter / find_mobile_sam_checkpoint live in the torch-importing module
    if name in ('SamSegmenter', 'find_mobile_sam_checkpoint', 'HOWTO', 'SAM_MODELS'):
        from autolabel_ros.segment import sam
        return getattr(sam, name)
    raise AttributeError(name)


def make_segmenter(cfg, device='auto') -> Segmenter:
    """Build the segmenter of a ``SegmenterConfig`` (model: mobile_sam | vit_b | vit_l | vit_h | box).

    ``device``: a torch.device (from ``autolabel_ros.core.device.resolve_device``) or its string.
    Raises ``SegmenterUnavailable`` with a how-to-fix message when no model can be built.
    """
    model = str(getattr(cfg, 'model', 'mobile_sam') or 'mobile_sam').strip().lower()
    if model == 'box':
        return BoxSegmenter()
    from autolabel_ros.segment.sam import SamSegmenter

    return SamSegmenter(model=model, checkpoint=getattr(cfg, 'checkpoint', '') or None, device=device,
                        multimask=bool(getattr(cfg, 'multimask', False)),
                        embed_margin=int(getattr(cfg, 'embed_margin', 10)),
                        precision=str(getattr(cfg, 'precision', 'float32')),
                        num_threads=int(getattr(cfg, 'threads', 0)) or None)
