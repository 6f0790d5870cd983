"""autolabel_ros: automatic 3D labels (cuboids + car meshes) from camera, LiDAR and 2D prompts."""
__version__ = '0.1.0'
