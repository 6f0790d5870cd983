"""The layering rules of the package, checked on the source (no imports executed)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / 'autolabel_ros'
ROS_MODULES = ('rclpy', 'message_filters', 'tf2_ros', 'sensor_msgs', 'std_msgs', 'geometry_msgs',
               'visualization_msgs', 'vision_msgs', 'builtin_interfaces', 'launch', 'launch_ros',
               'sensor_msgs_py', 'cv_bridge')
# A folder may import only folders on its own floor or below (ARCHITECTURE.md); faces import anything.
FORBIDDEN = {
    'core': ('shape', 'segment', 'detect', 'fit', 'io', 'sim', 'eval', 'cli', 'nodes', 'pipeline', 'offline'),
    'shape': ('segment', 'detect', 'fit', 'io', 'sim', 'eval', 'cli', 'nodes', 'pipeline', 'offline'),
    'fit': ('io', 'sim', 'eval', 'cli', 'nodes', 'pipeline', 'segment', 'detect', 'offline'),
    'segment': ('fit', 'io', 'sim', 'eval', 'cli', 'nodes', 'pipeline', 'offline'),
    'detect': ('fit', 'io', 'sim', 'eval', 'cli', 'nodes', 'pipeline', 'offline'),
    'io': ('fit', 'sim', 'eval', 'cli', 'nodes', 'pipeline', 'segment', 'detect', 'offline'),
    'eval': ('fit', 'sim', 'cli', 'nodes', 'pipeline', 'segment', 'detect', 'offline'),
    'sim': ('fit', 'eval', 'cli', 'nodes', 'pipeline', 'segment', 'detect', 'offline'),
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_only_nodes_import_ros():
    offenders = []
    for path in PKG.rglob('*.py'):
        if 'nodes' in path.relative_to(PKG).parts:
            continue
        for mod in _imports(path):
            if mod.split('.')[0] in ROS_MODULES:
                offenders.append(f'{path.relative_to(PKG)} imports {mod}')
    assert not offenders, offenders


def test_layers_import_downwards_only():
    offenders = []
    for folder, banned in FORBIDDEN.items():
        for path in (PKG / folder).rglob('*.py'):
            for mod in _imports(path):
                parts = mod.split('.')
                if parts[0] == 'autolabel_ros' and len(parts) > 1 and parts[1] in banned:
                    offenders.append(f'{path.relative_to(PKG)} imports {mod}')
    assert not offenders, offenders
