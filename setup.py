"""ament_python package that also installs with plain pip (the offline tools need no ROS)."""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'autolabel_ros'


def _requirements():
    # resolved from this file: colcon --symlink-install runs setup.py from build/
    with open(Path(__file__).resolve().parent / 'requirements.txt') as f:
        lines = [ln.split('#')[0].strip() for ln in f]
    # torch is installed by scripts/env.sh from local disk (or by the ROS user); listing it here
    # would let pip pull another build, so it stays out of install_requires.
    return [ln for ln in lines if ln and not ln.startswith(('torch', 'ray'))]


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE + '.data': ['*.npz', '*.pt']},
    include_package_data=True,
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config',
         glob('config/*.yaml') + glob('config/*.rviz') + glob('config/*.xml')),
    ],
    install_requires=_requirements(),
    extras_require={'ray': ['ray[default]>=2.9']},
    zip_safe=True,
    maintainer='autolabel_ros maintainers',
    maintainer_email='maintainers@autolabel-ros.dev',
    description='Automatic 3D cuboid and shape labels from camera + LiDAR and 2D prompts.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'autolabel-eval = autolabel_ros.cli.entry:eval_main',
            'autolabel-sim = autolabel_ros.cli.entry:sim_main',
            'autolabel-kitti = autolabel_ros.cli.entry:kitti_main',
            'autolabel-build-prior = autolabel_ros.cli.entry:build_prior_main',
            'autolabel-train-css = autolabel_ros.cli.entry:train_css_main',
            'autolabel-curriculum = autolabel_ros.cli.entry:curriculum_main',
            'autolabel-bag = autolabel_ros.cli.entry:bag_main',
            'autolabel_bag = autolabel_ros.cli.entry:bag_main',
            'detector_node = autolabel_ros.nodes.entry:detector_node',
            'fitter_node = autolabel_ros.nodes.entry:fitter_node',
        ],
    },
)
