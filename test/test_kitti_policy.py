"""The one KITTI output policy of autolabel-kitti and autolabel-bag (io/kitti_policy.py)."""
import numpy as np

from autolabel_ros.core.types import Label3D
from autolabel_ros.io.kitti_policy import kitti_predictions


def test_rejected_labels_are_written_at_half_score_and_unplaced_ones_not_at_all():
    acc = Label3D(center=[10.0, 1.0, -0.8], size=[3.9, 1.6, 1.5], yaw=0.2, score=0.83, id=1)
    rej = Label3D(center=[20.0, -3.0, -0.8], size=[3.9, 1.6, 1.5], yaw=1.0, score=0.64, id=2, accepted=False,
                  reasons=['low_mask_iou'])
    gone = Label3D(center=np.full(3, np.nan), size=[3.9, 1.6, 1.5], yaw=0.0, score=0.0, id=3, accepted=False,
                   reasons=['empty_box'])
    out = kitti_predictions([acc, rej, gone])
    assert [lab.id for lab in out] == [1, 2]
    assert out[0].score == 0.83 and out[1].score == 0.32
    assert rej.score == 0.64 and out[1] is not rej          # the pipeline's labels are not changed
    # accepted labels (score >= verify.min_mask_iou = 0.7) and rejected ones (<= 0.5) are separable
    scores = {lab.accepted: lab.score for lab in out}
    assert scores[True] > 0.5 >= scores[False]
