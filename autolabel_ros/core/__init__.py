"""Data model and geometry shared by every layer (numpy only, no ROS, no torch)."""
from autolabel_ros.core.types import Label3D, LabelResult, Mesh, Prompt, SensorFrame

__all__ = ['Label3D', 'LabelResult', 'Mesh', 'Prompt', 'SensorFrame']
