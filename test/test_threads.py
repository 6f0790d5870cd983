"""One place sets a labelling process' compute threads (core/device.process_threads): the fitter node
and autolabel-bag's workers call it with the same config, so they fit with the same thread counts."""
from __future__ import annotations

import cv2
import torch

from autolabel_ros.config import AutolabelConfig, to_dict
from autolabel_ros.core.device import process_threads
from autolabel_ros.offline.worker import FrameLabeler


def test_bag_worker_and_node_set_the_same_threads():
    saved_torch, saved_cv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        cfg = AutolabelConfig()
        cfg.fit.threads = 1
        torch.set_num_threads(2)
        cv2.setNumThreads(3)
        FrameLabeler(to_dict(cfg))._models(need_detector=False)      # autolabel-bag --workers 1
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 3
        torch.set_num_threads(2)
        assert process_threads(cfg.fit.threads) == 1                # what the fitter node calls
        assert cv2.getNumThreads() == 3                              # OpenCV keeps its own without a share
        # a worker process' share: OpenCV gets it; torch too when fit.threads is 0
        assert process_threads(1, share=2) == 1 and cv2.getNumThreads() == 2
        assert process_threads(0, share=2) == 2
        assert process_threads(0) == 2                              # 0 and no share: torch's setting stays
    finally:
        torch.set_num_threads(saved_torch)
        cv2.setNumThreads(saved_cv)
