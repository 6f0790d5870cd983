"""MobileSAM and SSD-MobileNet-v2 on real KITTI frames: timings, mask quality, detections.

    python benchmarks/segment_detect_kitti.py [--data ../shared/data/kitti_object/training]
        [--frame 000008] [--repeats 3] [--figure benchmarks/figures/sam_kitti_000008.png] [--json out.json]

Mask quality without mask ground truth: IoU of each mask's bounding box with its prompt box, the
share of the mask inside the box, and how much of the box the mask fills. The figure is derived
from KITTI (CC BY-NC-SA): look at it, do not commit it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def bbox(mask):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)


def mask_stats(masks, scores, boxes):
    from autolabel_ros.core.geometry import box_iou

    rows = []
    for m, s, b in zip(masks, scores, boxes):
        mb = bbox(m)
        x1, y1, x2, y2 = np.round(b).astype(int)
        inside = int(m[y1:y2 + 1, x1:x2 + 1].sum())
        rows.append({'score': round(float(s), 3),
                     'bbox_iou': round(box_iou(mb + [0, 0, 1, 1], np.asarray(b) + [0, 0, 1, 1]), 3)
                     if mb is not None else 0.0,
                     'inside_box': round(inside / max(int(m.sum()), 1), 3),
                     'box_fill': round(inside / ((x2 - x1 + 1) * (y2 - y1 + 1)), 3)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=str(REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training'))
    ap.add_argument('--frame', default='000008')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--figure', default=str(REPO / 'benchmarks' / 'figures' / 'sam_kitti_000008.png'))
    ap.add_argument('--json', default='')
    args = ap.parse_args(argv)

    import torch

    from autolabel_ros.config import DetectorConfig, SegmenterConfig
    from autolabel_ros.detect import make_detector
    from autolabel_ros.core.geometry import box_iou
    from autolabel_ros.io.kitti import KittiObjectDataset
    from autolabel_ros.segment import make_segmenter

    ds = KittiObjectDataset(args.data)
    img = ds.load_frame(args.frame).image
    box_prompts = ds.prompts(args.frame, 'gt-boxes')
    point_prompts = ds.prompts(args.frame, 'gt-points')
    gt_boxes = [p.box for p in box_prompts]
    res = {'frame': args.frame, 'image': list(img.shape[:2]), 'cars': len(box_prompts),
           'torch_threads': torch.get_num_threads(), 'repeats': args.repeats}

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t0 = time.perf_counter()
        seg = make_segmenter(SegmenterConfig(), 'cpu')
        res['sam_build_s'] = round(time.perf_counter() - t0, 3)     # includes importing the packages
    res['sam_load_s'] = round(seg.timings['load_s'], 3)
    seg.cache_embedding = False          # time a fresh embedding every call
    emb, dec, dec_pts, cpu = [], [], [], []
    for _ in range(args.repeats):
        c0 = time.process_time()
        masks, scores = seg.segment(img, box_prompts)
        cpu.append(time.process_time() - c0)
        emb.append(seg.timings['embed_s'])
        dec.append(seg.timings['decode_s'])
    seg.cache_embedding = True
    seg.segment(img, point_prompts[:1])
    for _ in range(args.repeats):
        pmasks, pscores = seg.segment(img, point_prompts)
        dec_pts.append(seg.timings['decode_s'])
    res['sam_embed_s'] = [round(x, 3) for x in emb]
    res['sam_decode_boxes_s'] = [round(x, 3) for x in dec]
    # CPU seconds of this process for embedding + decoding: less sensitive to other jobs on the machine
    res['sam_frame_cpu_s'] = [round(x, 3) for x in cpu]
    res['sam_decode_points_s'] = [round(x, 3) for x in dec_pts]
    res['box_prompts'] = mask_stats(masks, scores, gt_boxes)
    res['point_prompts'] = mask_stats(pmasks, pscores, gt_boxes)
    res['box_vs_point_mask_iou'] = [round(float((a & b).sum() / max((a | b).sum(), 1)), 3)
                                    for a, b in zip(masks, pmasks)]

    t0 = time.perf_counter()
    det = make_detector(DetectorConfig(backend='ssd_mobilenet'), 'cpu')
    res['ssd_load_s'] = round(time.perf_counter() - t0, 3)
    times = []
    for _ in range(max(args.repeats, 5)):
        dets = det.detect(img)
        times.append(det.timings['detect_s'])
    res['ssd_detect_s'] = [round(x, 3) for x in times]
    best = [max([box_iou(d.box, g) for d in dets] or [0.0]) for g in gt_boxes]
    res['ssd'] = {'detections': len(dets), 'score_threshold': 0.4,
                  'gt_found_iou50': int(sum(b >= 0.5 for b in best)),
                  'gt_best_iou': [round(b, 3) for b in best],
                  'boxes': [[round(v) for v in d.box] + [d.cls, round(d.score, 2)] for d in dets]}

    if args.figure:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        fig, axes = plt.subplots(2, 1, figsize=(14, 9))
        for ax, ms, title in ((axes[0], masks, 'MobileSAM, GT Car box prompts (green), SSD boxes (orange)'),
                              (axes[1], pmasks, 'MobileSAM, 3 GT point prompts per car (white)')):
            over = img.astype(float) / 255
            colours = plt.cm.tab10(np.arange(len(ms)) % 10)[:, :3]
            for m, c in zip(ms, colours):
                over[m] = 0.45 * over[m] + 0.55 * c
            ax.imshow(over)
            for b in gt_boxes:
                ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec='lime', lw=1.2))
            ax.set_title(title)
            ax.axis('off')
        for d in dets:
            b = d.box
            axes[0].add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec='orange', lw=1.2,
                                        ls='--'))
        for p in point_prompts:
            axes[1].plot(p.points[:, 0], p.points[:, 1], 'w+', ms=8, mew=2)
        fig.tight_layout()
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=90)
        res['figure'] = args.figure

    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
