"""Detector backends: the packaged SSD-MobileNet-v2 on real KITTI, torchvision through its real
local-weights loader (randomly initialized weights saved to a temp file), and 'none'."""
import numpy as np
import pytest

from autolabel_ros.config import DetectorConfig
from autolabel_ros.core.types import Prompt
from autolabel_ros.detect import DetectorUnavailable, NullDetector, make_detector
from autolabel_ros.core.geometry import box_iou
from autolabel_ros.detect.base import resolve_classes, to_prompts


def test_post_processing_filters_sorts_and_clips():
    boxes = np.array([[10, 10, 50, 40], [-5, 0, 30, 20], [0, 0, 5, 5], [20, 20, 90, 99], [1, 1, 1.5, 9]])
    scores = np.array([0.5, 0.9, 0.95, 0.45, 0.99])
    labels = np.array([3, 8, 1, 6, 3])          # car, truck, person, bus, car (degenerate box)
    out = to_prompts(boxes, scores, labels, 64, 48, resolve_classes(['car', 'Truck', 'BUS']), 0.46, 10)
    assert [p.cls for p in out] == ['Truck', 'Car']
    assert [p.id for p in out] == [0, 1] and out[0].score == pytest.approx(0.9)
    assert out[0].box.tolist() == [0, 0, 30, 20]
    assert len(to_prompts(boxes, scores, labels, 64, 48, resolve_classes([]), 0.0, 2)) == 2
    with pytest.raises(DetectorUnavailable, match="unknown class 'boat'"):
        resolve_classes(['car', 'boat'])


def test_none_backend():
    det = make_detector(DetectorConfig(backend='none'))
    assert isinstance(det, NullDetector) and det.detect(np.zeros((8, 8, 3), np.uint8)) == []
    with pytest.raises(DetectorUnavailable, match='unknown detector.backend'):
        make_detector(DetectorConfig(backend='yolo'))


def test_ssd_finds_the_cars_of_kitti_000008(kitti_training):
    from autolabel_ros.io.kitti import read_image, read_label_file

    try:
        det = make_detector(DetectorConfig(backend='ssd_mobilenet', score_threshold=0.4), 'cpu')
    except DetectorUnavailable as exc:
        pytest.skip(str(exc))
    img = read_image(kitti_training / 'image_2' / '000008.png')
    gt = [o.bbox for o in read_label_file(kitti_training / 'label_2' / '000008.txt') if o.type == 'Car']
    prompts = det.detect(img)
    assert prompts and all(isinstance(p, Prompt) for p in prompts)
    assert [p.id for p in prompts] == list(range(len(prompts)))
    assert all(p.cls in ('Car', 'Truck', 'Bus') and p.score >= 0.4 for p in prompts)
    assert all(0 <= p.box[0] < p.box[2] <= img.shape[1] - 1 and 0 <= p.box[1] < p.box[3] <= img.shape[0] - 1
               for p in prompts)
    found = sum(max(box_iou(p.box, g) for p in prompts) >= 0.5 for g in gt)
    assert found >= 3, found          # near cars are found (measured: 5 of 6); distant ones may be missed
    assert det.timings['detect_s'] < 5.0
    mirrored = det.detect(img[:, ::-1])            # a non-contiguous view works as well
    assert sum(max(box_iou(p.box, [img.shape[1] - 1 - g[2], g[1], img.shape[1] - 1 - g[0], g[3]])
                   for p in mirrored) >= 0.5 for g in gt) >= 3


def test_ssd_tiles_cover_the_image_and_find_more_distant_cars(kitti_training):
    from autolabel_ros.detect.ssd import cut_by_tile, tile_windows
    from autolabel_ros.io.kitti import read_image, read_label_file

    wins = tile_windows(1242, 375, 4)
    assert [w[0] for w in wins] == [0, 289, 578, 867] and all(w[2] - w[0] == 375 for w in wins)
    assert tile_windows(300, 400, 4) == [] and tile_windows(1242, 375, 0) == []
    boxes = np.array([[0, 10, 50, 60], [290, 10, 340, 60], [500, 10, 663, 60], [1200, 10, 1242, 60]], float)
    which = np.array([1, 2, 2, 4])
    # a box at a tile side inside the image is cut (the next tile sees all of it); at the image side not
    assert cut_by_tile(boxes, which, [(0, 0, 1242, 375)] + wins, 1242).tolist() == [False, True, True, False]
    try:
        whole = make_detector(DetectorConfig(score_threshold=0.4), 'cpu')
        tiled = make_detector(DetectorConfig(score_threshold=0.4, tiles=4), 'cpu')
    except DetectorUnavailable as exc:
        pytest.skip(str(exc))
    img = read_image(kitti_training / 'image_2' / '000010.png')
    gt = [o.bbox for o in read_label_file(kitti_training / 'label_2' / '000010.txt')
          if o.type == 'Car' and o.bbox[3] - o.bbox[1] > 25]

    def found(prompts):
        return sum(max([box_iou(p.box, g) for p in prompts] + [0]) >= 0.5 for g in gt)
    # measured on 000010: 3 of the 8 cars taller than 25 px from the whole image, 6 with 4 tiles
    assert found(tiled.detect(img)) >= found(whole.detect(img)) + 2


def test_torchvision_missing_weights_is_a_clear_error(tmp_path):
    missing = tmp_path / 'fasterrcnn.pth'
    with pytest.raises(DetectorUnavailable, match=f"detector.weights '{missing}' does not exist"):
        make_detector(DetectorConfig(backend='fasterrcnn', weights=str(missing)), 'cpu')
    with pytest.raises(DetectorUnavailable, match='needs detector.weights'):
        make_detector(DetectorConfig(backend='fcos', weights=''), 'cpu')


def test_every_torchvision_backend_names_a_builder():
    import torchvision.models.detection as tvd

    from autolabel_ros.detect.tv import ARCHITECTURES

    assert all(callable(getattr(tvd, arch, None)) for arch in ARCHITECTURES.values())


@pytest.mark.parametrize('backend,builder', [('fasterrcnn', 'fasterrcnn_resnet50_fpn')])
def test_torchvision_loads_a_local_state_dict_and_runs(tmp_path, backend, builder):
    import torch
    import torchvision.models.detection as tvd

    from autolabel_ros.detect.tv import TorchvisionDetector

    torch.manual_seed(0)
    path = tmp_path / f'{builder}.pth'
    torch.save(getattr(tvd, builder)(weights=None, weights_backbone=None, num_classes=91).state_dict(), path)
    # a smaller input resize keeps the random-weights forward pass quick on CPU
    small = TorchvisionDetector(backend, str(path), 'cpu', score_threshold=0.0, classes=[],
                                min_size=256, max_size=256)
    assert small.arch == builder
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    out = small.detect(img)
    assert isinstance(out, list) and all(isinstance(p, Prompt) for p in out)
    assert all(p.box[2] <= 127 and p.box[3] <= 95 for p in out)
    # weights of another architecture are rejected, naming the file
    with pytest.raises(DetectorUnavailable, match=f'{builder}.pth.*do not fit'):
        TorchvisionDetector('ssdlite', str(path), 'cpu')
