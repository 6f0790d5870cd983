"""The ROS 2 message definitions the project uses, as a ``rosbags`` typestore (no ROS install needed).

The stock Humble store covers sensor_msgs, geometry_msgs, tf2_msgs, std_msgs and visualization_msgs;
their definitions are the same in Jazzy for every type used here. vision_msgs is not in any stock
store, so its 4.x (Humble / Jazzy) definitions are registered from the .msg texts below. Note the
4.x layout: ``bbox.center.position.x`` (vision_msgs/Pose2D with a Point2D), string ``class_id``
inside ``results[i].hypothesis``, and a string ``id`` instead of 3.x's tracking fields.
"""
from __future__ import annotations

from functools import lru_cache

# vision_msgs 4.1 definitions (comments dropped; field lists as shipped with Humble and Jazzy).
VISION_MSGS_DEFINITIONS: dict[str, str] = {
    'vision_msgs/msg/Point2D': """
float64 x
float64 y
""",
    'vision_msgs/msg/Pose2D': """
vision_msgs/Point2D position
float64 theta
""",
    'vision_msgs/msg/BoundingBox2D': """
vision_msgs/Pose2D center
float64 size_x
float64 size_y
""",
    'vision_msgs/msg/BoundingBox3D': """
geometry_msgs/Pose center
geometry_msgs/Vector3 size
""",
    'vision_msgs/msg/ObjectHypothesis': """
string class_id
float64 score
""",
    'vision_msgs/msg/ObjectHypothesisWithPose': """
vision_msgs/ObjectHypothesis hypothesis
geometry_msgs/PoseWithCovariance pose
""",
    'vision_msgs/msg/Detection2D': """
std_msgs/Header header
vision_msgs/ObjectHypothesisWithPose[] results
vision_msgs/BoundingBox2D bbox
string id
""",
    'vision_msgs/msg/Detection2DArray': """
std_msgs/Header header
vision_msgs/Detection2D[] detections
""",
    'vision_msgs/msg/Detection3D': """
std_msgs/Header header
vision_msgs/ObjectHypothesisWithPose[] results
vision_msgs/BoundingBox3D bbox
string id
""",
    'vision_msgs/msg/Detection3DArray': """
std_msgs/Header header
vision_msgs/Detection3D[] detections
""",
}


def vision_msgs_types() -> dict:
    """The vision_msgs definitions parsed into a rosbags ``Typesdict`` (ready for ``register``)."""
    from rosbags.typesys import get_types_from_msg

    types: dict = {}
    for name, text in VISION_MSGS_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    return types


@lru_cache(maxsize=1)
def get_typestore():
    """The shared typestore: ROS 2 Humble stock types plus vision_msgs 4.x.

    Cached: every caller gets the same object, so message classes compare equal across modules.
    """
    from rosbags.typesys import Stores
    from rosbags.typesys import get_typestore as _stock

    store = _stock(Stores.ROS2_HUMBLE)
    store.register(vision_msgs_types())
    return store
