"""Click prompts pick the object under the clicks (fit/clicks.py): the clicks' depth from the scan
points under them, the mask cut to the clicked car, the frustum points at its depth."""
import numpy as np

from autolabel_ros.fit.clicks import click_depth, depth_window, trim_to_clicked


def _scene():
    """A 200 x 300 image: a far car (40 m) at rows 40-80, cols 100-200, half hidden behind a near
    car (12 m) at rows 70-150, cols 60-240; scan rows every 5 pixels, a point every 3 columns."""
    H, W = 200, 300
    uv, depth = [], []
    for v in range(2, H, 5):
        for u in range(1, W, 3):
            if 70 <= v < 150 and 60 <= u < 240:
                uv.append((u, v)), depth.append(12.0 + 0.01 * u)
            elif 40 <= v < 80 and 100 <= u < 200:
                uv.append((u, v)), depth.append(40.0 + 0.005 * u)
            else:
                uv.append((u, v)), depth.append(80.0)        # background wall
    uv, depth = np.asarray(uv, float), np.asarray(depth)
    far = np.zeros((H, W), bool)
    far[40:70, 100:200] = True                                  # the far car's visible part
    near = np.zeros((H, W), bool)
    near[70:150, 60:240] = True
    return uv, depth, np.ones(len(depth), bool), far, near


def test_click_depth_is_the_clicked_cars_even_next_to_a_nearer_one():
    uv, depth, usable, far, near = _scene()
    # clicks on the far car's visible strip, one just above the near car's edge
    clicks = np.array([[130.0, 50.0], [160.0, 60.0], [150.0, 67.0]])
    d = click_depth(clicks, uv, depth, usable)
    assert 40.0 < d < 41.1
    # clicks on the near car give the near car's depth
    d_near = click_depth(np.array([[100.0, 120.0], [180.0, 100.0], [140.0, 140.0]]), uv, depth, usable)
    assert 12.5 < d_near < 14.5
    # no scan point near any click: unknown
    assert click_depth(clicks, uv[:0], depth[:0], usable[:0]) is None


def test_trim_keeps_the_clicked_car_and_drops_the_car_in_front():
    uv, depth, usable, far, near = _scene()
    clicks = np.array([[130.0, 50.0], [160.0, 60.0], [150.0, 55.0]])
    sam_mask = far | near                                        # SAM took both cars
    d = click_depth(clicks, uv, depth, usable)
    out = trim_to_clicked(sam_mask, clicks, uv, depth, usable, d)
    assert (out & far).sum() >= 0.85 * far.sum()                 # the clicked car stays
    assert (out & near).sum() <= 0.05 * near.sum()               # the car in front goes
    # a mask on the clicked car alone is left as it is
    assert trim_to_clicked(far, clicks, uv, depth, usable, d).sum() >= 0.95 * far.sum()


def test_depth_window_spans_the_clicked_car_only():
    w = depth_window(np.array([12.0, 37.5, 40.0, 44.0, 46.0, 80.0]), 40.0)
    assert w.tolist() == [False, True, True, True, False, False]


def test_click_masks_are_eroded_box_masks_are_not():
    """A click prompt's mask loses its outline (fit.click_mask_erode_px) before the frustum points are
    taken, a box prompt's keeps it (fit.mask_erode_px 0): SAM's point-prompt masks bleed past the car."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.core.types import Prompt
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.sim.drive import Simulator
    sim = Simulator(3, n_cars=1, clutter=False, shadows=False)
    car = sim.scene.cars[0]
    car.x, car.y, car.yaw, car.speed = 14.0, 0.5, 0.3, 0.0
    sf = sim.frame(0)
    g = sf.gt[0]
    mask = sf.masks == g.id
    ys, xs = np.nonzero(mask)
    clicks = np.array([[xs.mean(), ys.mean()], [np.percentile(xs, 30), ys.mean()],
                       [np.percentile(xs, 70), ys.mean()]])
    click = Prompt(id=g.id, points=clicks, point_labels=np.ones(3), sources=('click',))
    box = Prompt(id=g.id, box=g.box2d, sources=('gt',))

    def n_points(prompt, erode):
        al = Autolabeler(from_dict({'fit': {'click_mask_erode_px': erode, 'max_points': 100000}}))
        return al.label(sf.frame, [prompt], [mask]).labels[0].metrics['n_points']

    assert n_points(click, 2) < n_points(click, 0)
    assert n_points(box, 2) == n_points(box, 0)
