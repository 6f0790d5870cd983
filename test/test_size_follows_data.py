"""The fitted size follows what the data sees: a car 0.6 m longer than the shape prior's mean car, seen
obliquely at 20 m (its length in the scan and the silhouette), must come out at its length, not at the
prior's, with the outline silhouette and a cheap common scale (fit/render.py, fit/energies.py)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autolabel_ros.core.types import Prompt
from autolabel_ros.pipeline import Autolabeler
from autolabel_ros.shape.cars import make_car_mesh, random_car_params
from autolabel_ros.sim.drive import Simulator


def _frame_with(mesh, dist: float, yaw: float):
    """One simulated frame holding a single car (this mesh), ``dist`` metres ahead, heading ``yaw``."""
    sim = Simulator(11, n_cars=1, clutter=False, car_source=lambda k: mesh)
    car = sim.scene.cars[0]
    car.x, car.y, car.yaw = sim.scene.ego_position(0.0)[0] + dist, 1.0, yaw
    return sim.frame(0)


@pytest.fixture(scope='module')
def labeler():
    from autolabel_ros.config import from_dict
    return Autolabeler(from_dict({'fit': {'silhouette': 'outline', 'w_scale_common': 0.3, 'lr_scale': 0.02}}))


@pytest.mark.parametrize('body,seed', [('wagon', 3), ('hatchback', 5)])
def test_oblique_long_car_length_follows_the_data_not_the_prior(labeler, body, seed):
    mean_l = float(labeler.sdf.mean_size[0])
    mesh = make_car_mesh(replace(random_car_params(seed, body_type=body), length=mean_l + 0.6))
    true_l = float(mesh.extents[0])
    assert abs(true_l - (mean_l + 0.6)) < 0.05
    sf = _frame_with(mesh, 20.0, np.pi / 4)
    assert len(sf.gt) == 1
    g = sf.gt[0]
    prompt = Prompt(id=0, box=np.asarray(g.box2d, float), cls='Car')
    lab = labeler.label(sf.frame, [prompt], [sf.masks == g.id]).labels[0]
    # the prior's mean car is 0.6 m shorter
    assert abs(lab.size[0] - true_l) < 0.2, (lab.size, true_l, mean_l)
