"""Launch the autolabel_ros nodes (+ RViz).

    ros2 launch autolabel_ros autolabel.launch.py \
        image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info \
        cloud_topic:=/lidar/points detector:=ssd_mobilenet use_sim_time:=true rviz:=true

detector:=none  -> no detector node; prompts come only from RViz "Publish Point" clicks.
detector:=fused -> the SSD detector node (down to proposals.confirm_score) and a fitter that fuses its
                   boxes with LiDAR object proposals (proposals.lidar on both nodes).
detector:=external -> no detector node; the fitter synchronizes with detections_topic published
                      by another node (vision_msgs/Detection2DArray with the image's header).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'autolabel_ros'

ARGUMENTS = [
    ('image_topic', '/camera/image_raw', 'camera image (sensor_msgs/Image; CompressedImage with the '
     'compressed_image parameter)'),
    ('camera_info_topic', '/camera/camera_info', 'sensor_msgs/CameraInfo of that camera'),
    ('cloud_topic', '/lidar/points', 'LiDAR sensor_msgs/PointCloud2'),
    ('detections_topic', '/autolabel/detections_2d', 'vision_msgs/Detection2DArray between detector and '
     'fitter'),
    ('detector', 'ssd_mobilenet', 'detector backend (ssd_mobilenet, fasterrcnn, retinanet, fcos, ...), '
     'fused (SSD + LiDAR proposals), none (clicks only) or external (another node publishes '
     'detections_topic)'),
    ('use_sim_time', 'false', 'true when replaying a bag with `ros2 bag play --clock`'),
    ('rviz', 'true', 'start RViz with config/autolabel.rviz'),
    ('fixed_frame', 'lidar', "RViz fixed frame (the LiDAR's frame id)"),
    ('log_level', 'info', 'ROS log level of both nodes (debug shows per-frame timings)'),
]


def generate_launch_description():
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
    ]
    use_sim_time = ParameterValue(cfg('use_sim_time'), value_type=bool)
    detector = cfg('detector')
    run_detector = IfCondition(PythonExpression(["'", detector, "' not in ('none', 'external')"]))
    sync_detections = ParameterValue(PythonExpression(["'", detector, "' != 'none'"]), value_type=bool)
    ros_args = ['--ros-args', '--log-level', cfg('log_level')]
    fused = ParameterValue(PythonExpression(["'", detector, "' == 'fused'"]), value_type=bool)
    backend = PythonExpression(["'ssd_mobilenet' if '", detector, "' == 'fused' else '", detector, "'"])

    detector_node = Node(
        package=PACKAGE, executable='detector_node', name='autolabel_detector', output='screen',
        parameters=[cfg('params_file'), {'use_sim_time': use_sim_time, 'detector.backend': backend,
                                         'proposals.lidar': fused}],
        remappings=[('image', cfg('image_topic')), ('detections', cfg('detections_topic'))],
        arguments=ros_args, condition=run_detector)
    fitter_node = Node(
        package=PACKAGE, executable='fitter_node', name='autolabel_fitter', output='screen',
        parameters=[cfg('params_file'), {'use_sim_time': use_sim_time, 'sync_detections': sync_detections,
                                         'proposals.lidar': fused}],
        remappings=[('image', cfg('image_topic')), ('camera_info', cfg('camera_info_topic')),
                    ('points', cfg('cloud_topic')), ('detections', cfg('detections_topic'))],
        arguments=ros_args)
    rviz = Node(
        package='rviz2', executable='rviz2', name='rviz2', output='log',
        arguments=['-d', cfg('rviz_config'), '-f', cfg('fixed_frame')],
        parameters=[{'use_sim_time': use_sim_time}], condition=IfCondition(cfg('rviz')))
    return LaunchDescription(declared + [detector_node, fitter_node, rviz])
