"""Launch the autolabel_ros nodes (+ RViz).

    ros2 launch autolabel_ros autolabel.launch.py \
        image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info \
        cloud_topic:=/lidar/points detector:=fused use_sim_time:=true rviz:=true

detector:=fused (default) -> the SSD detector node (down to proposals.confirm_score) and a fitter
                   that fuses its boxes with LiDAR object proposals (proposals.lidar on both nodes).
detector:=ssd_mobilenet (or another backend) -> that detector's boxes alone are the prompts.
detector:=none  -> no detector node; prompts come only from RViz "Publish Point" clicks.
detector:=external -> no detector node; the fitter synchronizes with detections_topic published
                      by another node (vision_msgs/Detection2DArray with the image's header).

Both nodes are lifecycle nodes; autostart:=true (default) has them configure and activate
themselves, autostart:=false leaves them unconfigured for `ros2 lifecycle set` or a lifecycle
manager. namespace:=NAME puts the nodes and RViz under /NAME (RViz's config uses relative names
for the fitter's outputs and is remapped onto cloud_topic).
"""
import os
import signal
import sys
import threading

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import (EnvironmentVariable, EqualsSubstitution, IfElseSubstitution,
                                  LaunchConfiguration, NotEqualsSubstitution, NotSubstitution,
                                  OrSubstitution, PathJoinSubstitution)
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'autolabel_ros'
RVIZ_CLOUD_TOPIC = '/lidar/points'     # the PointCloud2 display's topic in config/autolabel.rviz

ARGUMENTS = [
    ('namespace', '', 'ROS namespace of both nodes and RViz (empty = the root namespace)'),
    ('image_topic', '/camera/image_raw', 'camera image (sensor_msgs/Image; CompressedImage with the '
     'compressed_image parameter)'),
    ('camera_info_topic', '/camera/camera_info', 'sensor_msgs/CameraInfo of that camera'),
    ('cloud_topic', '/lidar/points', 'LiDAR sensor_msgs/PointCloud2 (RViz shows this topic too)'),
    ('detections_topic', '/autolabel/detections_2d', 'vision_msgs/Detection2DArray between detector and '
     'fitter'),
    ('detector', 'fused', 'fused (the SSD + LiDAR object proposals), a detector backend alone '
     '(ssd_mobilenet, fasterrcnn, retinanet, fcos, ...), none (clicks only) or external (another node '
     'publishes detections_topic)'),
    ('use_sim_time', 'false', 'true when replaying a bag with `ros2 bag play --clock`'),
    ('autostart', 'true', 'configure and activate the lifecycle nodes at startup'),
    ('rviz', 'true', 'start RViz with config/autolabel.rviz'),
    ('fixed_frame', 'lidar', "RViz fixed frame (the LiDAR's frame id)"),
    ('log_level', 'info', 'ROS log level of both nodes (debug shows per-frame timings)'),
]


def _ignore_sigint(signum, frame):
    """Python-level SIGINT handler of the `ros2 launch` process: nothing to do here (see below)."""


def keep_ctrl_c_out_of_the_launch_loop() -> bool:
    """In the `ros2 launch` process, let SIGINT reach launch only through its signal manager.

    launch handles Ctrl-C by reading the signal number from a wakeup fd in its event loop, and
    merely catches and ignores the KeyboardInterrupt that Python's default SIGINT handler raises as
    well. But that exception is raised at whatever bytecode the main thread is running; when it
    lands inside asyncio's (C) scheduling of a future's callbacks, a wakeup is lost: launch then
    never processes its Shutdown event, never forwards SIGINT to the nodes and hangs until killed.
    The busier the loop (every output line of the nodes is an event: log_level:=debug), the likelier.
    A Python handler that does nothing keeps the wakeup fd (CPython writes to it for any Python
    handler) and raises nothing. Only for the `ros2` CLI's main thread with the default handler in
    place: a test runner or a tool that includes this file keeps its own Ctrl-C behaviour."""
    if (threading.current_thread() is not threading.main_thread()
            or os.path.basename(sys.argv[0]) != 'ros2'
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        return False
    signal.signal(signal.SIGINT, _ignore_sigint)
    return True


def _check_params_file(context):
    """launch_ros only warns ("Parameter file path is not a file") and starts the nodes with every
    default when params_file:= names no file (a typo): stop the launch with one line instead."""
    path = LaunchConfiguration('params_file').perform(context)
    if not os.path.isfile(path):
        raise RuntimeError(f'params_file:={path}: no such file')
    return []


def _check_rviz(context):
    """rviz:=true without RViz installed: launch_ros fails on the rviz2 node only after the fitter (and the
    detector) started, and leaves them running without the launch; stop before any node starts."""
    if not IfCondition(LaunchConfiguration('rviz')).evaluate(context):
        return []
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        get_package_prefix('rviz2')
    except PackageNotFoundError:
        raise RuntimeError("rviz:=true but RViz (package 'rviz2') is not installed: install "
                           'ros-$ROS_DISTRO-rviz2, or pass rviz:=false') from None
    return []


def generate_launch_description():
    keep_ctrl_c_out_of_the_launch_loop()
    share = FindPackageShare(PACKAGE)
    cfg = LaunchConfiguration
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    declared += [
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config', 'autolabel.yaml']),
                              description='node + pipeline parameters (YAML, /**: ros__parameters:)'),
        DeclareLaunchArgument('rviz_config',
                              default_value=PathJoinSubstitution([share, 'config', 'autolabel.rviz']),
                              description='RViz configuration'),
        DeclareLaunchArgument('dds_config',
                              default_value=PathJoinSubstitution([share, 'config', 'cyclonedds.xml']),
                              description='CYCLONEDDS_URI of the nodes when the environment sets none '
                                          '(larger socket buffers for multi-MB clouds)'),
    ]
    use_sim_time = ParameterValue(cfg('use_sim_time'), value_type=bool)
    autostart = ParameterValue(cfg('autostart'), value_type=bool)
    detector = cfg('detector')
    run_detector = IfCondition(NotSubstitution(OrSubstitution(EqualsSubstitution(detector, 'none'),
                                                              EqualsSubstitution(detector, 'external'))))
    sync_detections = ParameterValue(NotEqualsSubstitution(detector, 'none'), value_type=bool)
    log_level = ['--log-level', cfg('log_level')]
    is_fused = EqualsSubstitution(detector, 'fused')
    fused = ParameterValue(is_fused, value_type=bool)
    backend = IfElseSubstitution(is_fused, 'ssd_mobilenet', detector)     # fused = SSD + LiDAR proposals
    # an explicit CYCLONEDDS_URI of the caller wins over the packaged one
    dds = SetEnvironmentVariable('CYCLONEDDS_URI', EnvironmentVariable('CYCLONEDDS_URI',
                                                                       default_value=cfg('dds_config')))

    detector_node = LifecycleNode(
        package=PACKAGE, executable='detector_node', name='autolabel_detector', namespace=cfg('namespace'),
        output='screen',
        parameters=[cfg('params_file'), {'use_sim_time': use_sim_time, 'detector.backend': backend,
                                         'proposals.lidar': fused, 'autostart': autostart}],
        remappings=[('image', cfg('image_topic')), ('detections', cfg('detections_topic'))],
        ros_arguments=log_level, condition=run_detector)
    fitter_node = LifecycleNode(
        package=PACKAGE, executable='fitter_node', name='autolabel_fitter', namespace=cfg('namespace'),
        output='screen',
        parameters=[cfg('params_file'), {'use_sim_time': use_sim_time, 'sync_detections': sync_detections,
                                         'proposals.lidar': fused, 'autostart': autostart}],
        remappings=[('image', cfg('image_topic')), ('camera_info', cfg('camera_info_topic')),
                    ('points', cfg('cloud_topic')), ('detections', cfg('detections_topic'))],
        ros_arguments=log_level)
    rviz = Node(
        package='rviz2', executable='rviz2', name='rviz2', namespace=cfg('namespace'), output='log',
        arguments=['-d', cfg('rviz_config'), '-f', cfg('fixed_frame')],
        remappings=[(RVIZ_CLOUD_TOPIC, cfg('cloud_topic'))],
        parameters=[{'use_sim_time': use_sim_time}], condition=IfCondition(cfg('rviz')))
    return LaunchDescription(declared + [OpaqueFunction(function=_check_params_file),
                                         OpaqueFunction(function=_check_rviz), dds, detector_node,
                                         fitter_node, rviz])
