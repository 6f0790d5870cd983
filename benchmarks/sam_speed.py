"""MobileSAM on the KITTI development frames: masks of the segmenter's variants (cropped embedding,
encoder precision) vs SAM's full square and vs the default, and their time, interleaved A/B (this
machine is shared: absolute times move with the load).

    python benchmarks/sam_speed.py [--margins 4 10] [--precisions float32 bfloat16] [--repeats 3]
                                   [--threads 1 2] [--frame 000008]

Masks: per GT-box prompt of the 12 frames, IoU of each variant (``segmenter.embed_margin`` x
``segmenter.precision``) against ``embed_margin: -1`` in float32 (the full 1024 x 1024 square, SAM's
own embedding) and against the first margin in float32 (the shipped default before precision),
next to the noise floor of SAM itself: full-square masks of the boxes moved by up to 1 px (uniform,
seed 0) against the unmoved ones. Time: on one frame, every variant in turn per repeat, at each
torch thread count; wall and process CPU seconds of the image embedding + decoder.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KITTI = Path(os.environ.get('AUTOLABEL_SHARED_DATA', Path(__file__).resolve().parents[2] / 'shared' / 'data')
             ) / 'kitti_object' / 'training'


def _iou(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _summary(v) -> str:
    v = np.asarray(v)
    return (f'n {len(v)}, mean {v.mean():.4f}, median {np.median(v):.4f}, 5 % {np.percentile(v, 5):.4f}, '
            f'min {v.min():.4f}')


def _name(margin: int, precision: str) -> str:
    return f'{"full square" if margin < 0 else f"embed_margin {margin}"} {precision}'


def main():
    import torch

    from autolabel_ros.core.types import Prompt
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.segment.sam import SamSegmenter

    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--margins', type=int, nargs='+', default=[10, 4])
    ap.add_argument('--precisions', nargs='+', default=['float32', 'bfloat16'])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, nargs='+', default=[1])
    ap.add_argument('--frame', default='000008')
    ap.add_argument('--skip-masks', action='store_true')
    ap.add_argument('--skip-library', action='store_true', help='leave segment-anything\'s SamPredictor '
                    'out of the timing')
    a = ap.parse_args()
    if not KITTI.is_dir():
        sys.exit(f'{KITTI}: KITTI development frames not found (set AUTOLABEL_SHARED_DATA)')
    torch.set_num_threads(1)
    ds = KittiObjectDataset(KITTI)
    full, default = _name(-1, 'float32'), _name(a.margins[0], 'float32')
    segs = {full: SamSegmenter(embed_margin=-1)}
    for m in a.margins:
        for p in a.precisions:
            segs[_name(m, p)] = SamSegmenter(embed_margin=m, precision=p)
    if not a.skip_masks:
        ious = {k: {full: [], default: []} for k in segs if k != full}
        jitter = []
        rng = np.random.default_rng(0)
        for fid in ds.frame_ids:
            img, prompts = ds.load_frame(fid).image, ds.prompts(fid, mode='gt-boxes')
            if not prompts:
                continue
            masks = {k: seg.segment(img, prompts)[0] for k, seg in segs.items()}
            moved = [Prompt(id=p.id, box=np.asarray(p.box, float) + rng.uniform(-1, 1, 4)) for p in prompts]
            jitter += [_iou(x, y) for x, y in zip(masks[full], segs[full].segment(img, moved)[0])]
            for k, ref in ious.items():
                for r, v in ref.items():
                    v += [_iou(x, y) for x, y in zip(masks[r], masks[k])]
            print(f'{fid}: {len(prompts)} boxes', flush=True)
        print(f'mask IoU, {full}, boxes moved <= 1 px (noise floor): {_summary(jitter)}')
        for r in (full, default):
            for k, ref in ious.items():
                if k != r:
                    print(f'mask IoU, {k} vs {r}: {_summary(ref[r])}')
    img, prompts = ds.load_frame(a.frame).image, ds.prompts(a.frame, mode='gt-boxes')
    runs = {} if a.skip_library else {'library SamPredictor (before)': library_run(img, prompts)}
    runs.update({k: segment_run(seg, img, prompts) for k, seg in segs.items()})
    for run in runs.values():
        run()                                         # warm-up: the empty image's embedding, allocations
    for n in a.threads:
        torch.set_num_threads(n)
        times = {k: [] for k in runs}
        for _ in range(a.repeats):
            for k, run in runs.items():
                t, c = time.perf_counter(), time.process_time()
                e, d = run()
                times[k].append((time.perf_counter() - t, time.process_time() - c, e, d))
        print(f'frame {a.frame}, {len(prompts)} boxes, {n} thread(s), median of {a.repeats} interleaved '
              f'runs:')
        base = np.median([x[1] for x in times[default]])
        for k, v in times.items():
            w, c, e, d = np.median(np.asarray(v), axis=0)
            print(f'  {k:>30}: wall {w:.2f} s (embedding {e:.2f}, decoder {d:.2f}), CPU {c:.2f} s, '
                  f'CPU ratio to {default} {c / base:.2f}')


def segment_run(seg, img, prompts):
    def run():
        seg._image_key = None                         # embed again: no reuse between repeats
        seg.segment(img, prompts)
        return seg.timings['embed_s'], seg.timings['decode_s']
    return run


def library_run(img, prompts):
    """The segmenter as it was: segment-anything's SamPredictor (full square, the library's decoder,
    batch norms unfolded), all boxes in one predict_torch call."""
    import torch
    from segment_anything import SamPredictor

    from autolabel_ros.segment.base import clean_prompt
    from autolabel_ros.segment.sam import SAM_MODELS, _load_state_dict, find_mobile_sam_checkpoint

    package, key = SAM_MODELS['mobile_sam']
    net = __import__(package).sam_model_registry[key](checkpoint=None)
    net.load_state_dict(_load_state_dict(find_mobile_sam_checkpoint()))
    pred = SamPredictor(net.eval())
    h, w = img.shape[:2]
    boxes = np.stack([clean_prompt(p, w, h).box for p in prompts])

    def run():
        with torch.inference_mode():
            t = time.perf_counter()
            pred.set_image(img)
            t1 = time.perf_counter()
            b = torch.as_tensor(pred.transform.apply_boxes(boxes, (h, w)), dtype=torch.float)
            pred.predict_torch(None, None, b, multimask_output=False)[0].numpy()
            return t1 - t, time.perf_counter() - t1
    return run


if __name__ == '__main__':
    main()
