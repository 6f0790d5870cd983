"""The one KITTI output policy of autolabel-kitti and autolabel-bag (io/kitti_policy.py)."""
import numpy as np

from autolabel_ros.core.types import Label3D
from autolabel_ros.fit.verify import label_score
from autolabel_ros.io.kitti_policy import BELOW_THRESHOLD, kitti_predictions


def test_labels_are_written_with_their_score_and_unplaced_ones_not_at_all():
    # accepted (P(right) 0.72 >= 0.7) but likely loose (P(tight) 0.1): score 0.41
    acc = Label3D(center=[10.0, 1.0, -0.8], size=[3.9, 1.6, 1.5], yaw=0.2, score=label_score(0.72, 0.1), id=1)
    rej = Label3D(center=[20.0, -3.0, -0.8], size=[3.9, 1.6, 1.5], yaw=1.0, score=0.24, id=2, accepted=False,
                  reasons=['low_confidence'])
    # rejected while lifting (too few points) although the model found it likely right
    lifted = Label3D(center=[30.0, 3.0, -0.8], size=[3.9, 1.6, 1.5], yaw=1.0, score=0.9, id=4,
                     accepted=False, reasons=['too_few_points'])
    gone = Label3D(center=np.full(3, np.nan), size=[3.9, 1.6, 1.5], yaw=0.0, score=0.0, id=3, accepted=False,
                   reasons=['empty_box'])
    out = kitti_predictions([acc, rej, lifted, gone], min_confidence=0.7)
    assert [lab.id for lab in out] == [1, 2, 4]
    assert np.isclose(out[0].score, 0.41) and out[1].score == 0.24
    assert out[2].score == 0.35 - BELOW_THRESHOLD
    assert lifted.score == 0.9 and out[2] is not lifted          # the pipeline's labels are not changed
    # accepted labels (score >= verify.min_confidence / 2) and rejected ones are separable
    accepted = [lab.score for lab in out if lab.accepted]
    assert min(accepted) >= 0.35 > max(lab.score for lab in out if not lab.accepted)
