"""Procedural car meshes: closed and consistently oriented, real sizes, canonical frame, parts,
determinism and variety."""
from collections import Counter

import numpy as np
import open3d as o3d
import pytest

from autolabel_ros.shape.cars import (BODY_TYPES, PART_IDS, car_collection, face_parts, make_car_mesh,
                                      random_car_params)


def _components(mesh):
    return mesh.split(only_watertight=False)


@pytest.mark.parametrize('body_type', BODY_TYPES)
def test_each_body_type_is_a_closed_car_in_the_canonical_frame(body_type):
    p = random_car_params(7, body_type)
    assert p.body_type == body_type
    m = make_car_mesh(p)
    assert m.is_watertight and m.is_winding_consistent and m.volume > 0
    comps = _components(m)
    assert len(comps) == 7                                   # body, 4 wheels, 2 wheel wells
    assert all(c.is_watertight and c.volume > 0 for c in comps)
    # origin at the bounding-box centre, extents = the requested length / width, realistic sizes
    np.testing.assert_allclose(m.bounds.mean(axis=0), 0.0, atol=1e-9)
    l, w, h = m.extents
    assert l == pytest.approx(p.length) and w == pytest.approx(p.width)
    assert 3.0 <= l <= 5.0 and 1.44 <= w <= 1.91 and 1.23 <= h <= 2.08
    # wheels touch the ground (box bottom) at both axles, and the body clears it in between
    v = m.vertices
    low = v[:, 2] < -h / 2 + 0.01
    assert np.any(low & (v[:, 0] > 0.2 * l)) and np.any(low & (v[:, 0] < -0.2 * l))
    body = max(comps, key=lambda c: c.volume)
    assert body.bounds[0, 2] > -h / 2 + 0.08
    # front at +x: the hood (front quarter) is lower than the roof (the middle)
    front = v[(v[:, 0] > 0.3 * l)]
    mid = v[np.abs(v[:, 0]) < 0.1 * l]
    assert front[:, 2].max() < mid[:, 2].max() - 0.15


def test_components_are_disjoint_solids():
    """Wheels and wells lie outside the body (so inside/outside is the union of the parts)."""
    for seed in range(12):
        m = make_car_mesh(random_car_params(seed))
        comps = sorted(_components(m), key=lambda c: -c.volume)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(comps[0].vertices.astype(np.float32)),
                            o3d.core.Tensor(comps[0].faces.astype(np.uint32)))
        others = np.vstack([c.vertices for c in comps[1:]]).astype(np.float32)
        sd = scene.compute_signed_distance(o3d.core.Tensor(others)).numpy()
        assert sd.min() > 0.0, f'seed {seed}: a wheel/well vertex lies inside the body ({sd.min():.3f})'


def test_parts_cover_paint_glass_tyres_rims_lights():
    counts = Counter()
    for seed in range(10):
        m = make_car_mesh(random_car_params(seed))
        fp = face_parts(m)
        assert len(fp) == len(m.faces)
        for name, i in PART_IDS.items():
            counts[name] += int(np.any(fp == i))
        # glass sits above the beltline, tyres at the bottom
        z = m.triangles_center[:, 2]
        assert np.median(z[fp == PART_IDS['glass']]) > np.median(z[fp == PART_IDS['paint']]) - 0.1
        assert z[fp == PART_IDS['tyre']].max() < 0.0
    for name in ('paint', 'glass', 'tyre', 'rim', 'trim', 'taillight'):
        assert counts[name] == 10, (name, counts)
    assert counts['headlight'] >= 8


def test_deterministic_by_seed_and_varied():
    a, b = make_car_mesh(random_car_params(123)), make_car_mesh(random_car_params(123))
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    c = make_car_mesh(random_car_params(124))
    assert not np.array_equal(a.extents, c.extents)
    params = [random_car_params(s) for s in range(300)]
    assert set(p.body_type for p in params) == set(BODY_TYPES)
    sizes = np.array([[p.length, p.width, p.height] for p in params])
    assert sizes[:, 0].std() > 0.3 and sizes[:, 2].std() > 0.1
    meshes = car_collection([1, 2, 3])
    assert len(meshes) == 3
    assert np.array_equal(meshes[0].vertices, make_car_mesh(random_car_params(1)).vertices)


def test_unknown_body_type_is_rejected():
    with pytest.raises(ValueError, match='limousine'):
        random_car_params(0, 'limousine')


def test_size_scale_maps_manufacturer_sizes_to_the_box_convention():
    from autolabel_ros.shape.cars import DEFAULT_SIZE_SCALE
    for seed in range(5):
        a, b = random_car_params(seed), random_car_params(seed, size_scale=(1, 1, 1))
        assert a.body_type == b.body_type and a.wheel_radius == b.wheel_radius
        np.testing.assert_allclose([a.length / b.length, a.width / b.width, a.height / b.height],
                                   DEFAULT_SIZE_SCALE)
    # the default fleet's mean box is the KITTI Car mean (3.88 x 1.63 x 1.53 m) within a few cm
    sizes = np.array([[p.length, p.width, p.height] for p in map(random_car_params, range(400))])
    assert np.all(np.abs(sizes.mean(0) - [3.88, 1.63, 1.53]) < [0.1, 0.05, 0.03]), sizes.mean(0)
