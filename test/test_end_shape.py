"""benchmarks/end_shape.py: how full a car's ends are in plan view and height."""
import trimesh

from benchmarks.end_shape import end_fullness, table


def test_a_square_end_fills_its_width_and_a_rounded_one_does_not():
    box = trimesh.creation.box(extents=(4.0, 1.8, 1.5))
    f = end_fullness(box, depths=(0.05, 0.3), samples=20000)
    for end in ('front', 'rear'):
        for w, zl, zh in f[end]:
            assert w > 0.97 and zl < 0.03 and zh > 0.97
    # an ellipsoid 4 x 1.8 x 1.5 m: at 0.05 m in from a tip the section's half-width is
    # sqrt(1 - (1.95 / 2) ** 2) = 0.22 of the full one, at 0.3 m 0.53
    ell = trimesh.creation.icosphere(subdivisions=4)
    ell.apply_scale((2.0, 0.9, 0.75))
    f = end_fullness(ell, depths=(0.05, 0.3), samples=20000)
    for end in ('front', 'rear'):
        (w1, zl1, zh1), (w2, _, _) = f[end]
        assert 0.15 < w1 < 0.3 and 0.45 < w2 < 0.6
        assert zl1 > 0.3 and zh1 < 0.7           # a pointed end sits mid-height


def test_table_has_a_row_per_set_and_end():
    box = trimesh.creation.box(extents=(4.0, 1.8, 1.5))
    lines = table({'boxes': [box, box]}, depths=(0.1,))
    assert lines[2].startswith('| boxes (2) | front | 1.00, 0.00-1.00')
    assert len(lines) == 4 and lines[3].startswith('| boxes (2) | rear |')
