"""The fleet's car length, read over a whole run and given to the cars whose length the data cannot see.

A car seen end-on shows one face to the camera and the scan: its far end, and so its length, is the
prior's mean car (3.9 m, the KITTI box convention). A drive's fleet may be longer (the ApolloCar3D
models average 4.6 m): those boxes then all come out short. A car seen side-on shows its length, and its
fitted length follows it (benchmarks/RESULTS.md, "The fleet's car length"). So, over a run's labels:
the side-on, well-seen, accepted cars give the fleet's length relative to the prior's mean car
(their mean log ratio, shrunk towards 1 as if ``PRIOR_CARS`` cars of the prior's length were among
them), and every other car keeps its near end (the face the data sees) and has its far end moved out
(or in) by that factor. The heading, the confidence and the near face do not change.

Side-on is chosen by the fitted heading against the line of sight, not by how far the points reach: the
cars whose scan reaches both ends of their box are the long ones, and an estimate from them read the
procedural fleet 0.2 m long and the ApolloCar3D fleet 0.4 m short. A run-level step, a pure function
of all of a run's labels (the KITTI folder tool, the bag tool at its assembly, the benchmarks): the same
labels whatever the number of workers or a resume. The fitter node, which sees one frame at a time, keeps
a running estimate over the frames so far (:class:`RunningFleet`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from autolabel_ros.core.types import Label3D, Mesh

SIDE_ON_COS = 0.5        # |cos(heading, line of sight)| below this: within 30 deg of side-on
MIN_POINTS = 30          # fit points of a car that counts (a far, sparse car's length is the prior's)
MAX_HIDDEN = 0.3         # share of its 2D box nearer objects hide
PRIOR_CARS = 5.0         # the estimate is shrunk as if this many cars of the prior's length were seen


@dataclass
class FleetLength:
    """What a run's fleet-length step read and did."""

    factor: float            # applied to the length of the cars not seen side-on
    side_on: int             # cars it was read from
    prior_length: float      # the prior's mean car (m)
    stretched: int = 0       # labels whose length it changed

    @property
    def fleet_length(self) -> float:
        return self.prior_length * self.factor

    def summary(self) -> str:
        return (f'fleet length {self.fleet_length:.2f} m (the prior\'s {self.prior_length:.2f} m x '
                f'{self.factor:.3f}) from {self.side_on} side-on car(s); {self.stretched} label(s) not seen '
                'side-on given it')


def is_car(lab: Label3D) -> bool:
    return lab.cls.lower() == 'car' and bool(np.all(np.isfinite(lab.box7)))


def end_on(lab: Label3D) -> float:
    """|cos| of the angle between the heading and the line of sight to the centre (sensor at the
    LiDAR origin): 0 side-on, 1 end-on."""
    ray = np.asarray(lab.center[:2], float)
    n = np.linalg.norm(ray)
    if n < 1e-6:
        return 1.0
    return float(abs(np.cos(lab.yaw) * ray[0] + np.sin(lab.yaw) * ray[1]) / n)


def reads_length(lab: Label3D) -> bool:
    """A car whose fitted length the data shows: side-on, accepted, well scanned, little hidden."""
    m = lab.metrics
    return (is_car(lab) and lab.accepted and end_on(lab) < SIDE_ON_COS
            and int(m.get('n_points', 0)) >= MIN_POINTS and float(m.get('occluded_share', 1.0)) < MAX_HIDDEN)


def takes_fleet(lab: Label3D) -> bool:
    """A car whose length the data does not show: it takes the fleet's."""
    return is_car(lab) and end_on(lab) >= SIDE_ON_COS


def shrunk_factor(log_sum: float, n: int) -> float:
    """The factor of ``n`` side-on cars whose log length ratios sum to ``log_sum``, shrunk towards 1 as if
    ``PRIOR_CARS`` cars of the prior's length were among them."""
    return float(np.exp(log_sum / (n + PRIOR_CARS))) if n else 1.0


def estimate(labels: Iterable[Label3D], prior_length: float) -> FleetLength:
    """The fleet's length factor from a run's labels."""
    logs = [np.log(lab.size[0] / prior_length) for lab in labels if reads_length(lab)]
    return FleetLength(factor=shrunk_factor(float(np.sum(logs)), len(logs)), side_on=len(logs),
                       prior_length=float(prior_length))


def give(labels: list[Label3D], factor: float) -> list[Label3D]:
    """The labels with the cars that take the fleet's length stretched by ``factor`` (the others, and all
    of them at factor 1, the same objects)."""
    if factor == 1.0:
        return list(labels)
    return [stretch(lab, factor) if takes_fleet(lab) else lab for lab in labels]


def stretch(lab: Label3D, factor: float) -> Label3D:
    """The label with its length times ``factor``, its near end (towards the sensor) where it was;
    the mesh stretched alike along the car."""
    h = np.array([np.cos(lab.yaw), np.sin(lab.yaw), 0.0])
    length = float(lab.size[0])
    far = 1.0 if float(lab.center @ h) >= 0.0 else -1.0         # the far end is along +h or -h
    near_u = -far * length / 2                                    # the near end, along h from the centre
    center = lab.center - h * (factor - 1.0) * near_u
    size = lab.size.copy()
    size[0] = length * factor
    mesh = None
    if lab.mesh is not None:
        v = np.asarray(lab.mesh.vertices, float)
        u = (v - lab.center) @ h
        mesh = Mesh(vertices=(v + np.outer((factor - 1.0) * (u - near_u), h)).astype(lab.mesh.vertices.dtype),
                    faces=lab.mesh.faces)
    metrics = dict(lab.metrics, fleet_factor=float(factor))
    return dataclasses.replace(lab, center=center, size=size, mesh=mesh, metrics=metrics)


def apply(frames: list[list[Label3D]], prior_length: float) -> tuple[list[list[Label3D]], FleetLength]:
    """Every frame's labels with the run's fleet length given to the cars not seen side-on (a new list
    per frame; the labels the step does not change are the same objects)."""
    fleet = estimate((lab for labels in frames for lab in labels), prior_length)
    out = [give(labels, fleet.factor) for labels in frames]
    fleet.stretched = sum(a is not b for before, after in zip(frames, out) for a, b in zip(before, after))
    return out, fleet


class RunningFleet:
    """The fleet length as a live stream goes (the fitter node): the side-on cars of the frames so far,
    this one's included, give the factor its end-on cars take. It starts at the prior's mean car and
    follows the drive; unlike :func:`apply` it depends on the order the frames came in."""

    def __init__(self, prior_length: float):
        self.prior_length = float(prior_length)
        self.log_sum = 0.0
        self.side_on = 0

    def factor(self) -> float:
        return shrunk_factor(self.log_sum, self.side_on)

    def summary(self) -> str:
        return (f'fleet length {self.prior_length * self.factor():.2f} m from {self.side_on} side-on '
                'car(s) so far')

    def apply(self, labels: list[Label3D]) -> list[Label3D]:
        """This frame's labels: its side-on cars counted, then its other cars given the factor."""
        for lab in labels:
            if reads_length(lab):
                self.log_sum += float(np.log(lab.size[0] / self.prior_length))
                self.side_on += 1
        return give(labels, self.factor())
