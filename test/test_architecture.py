"""The layering rules of the package, checked on the source (no imports executed)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / 'autolabel_ros'
ROS_MODULES = ('rclpy', 'message_filters', 'tf2_ros', 'sensor_msgs', 'std_msgs', 'geometry_msgs',
               'visualization_msgs', 'vision_msgs', 'builtin_interfaces', 'launch', 'launch_ros',
               'sensor_msgs_py', 'cv_bridge')
DOC = PKG.parent / 'docs' / 'ARCHITECTURE.md'


def _floors() -> dict:
    """unit -> allowed units ('*' = anything) from the floors table of docs/ARCHITECTURE.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 4 and cells[0].isdigit():
            unit = cells[1].strip('`').rstrip('/').removesuffix('.py')
            allowed = {u.strip() for u in cells[3].split(',') if u.strip('- ')}
            rows[unit] = {'*'} if cells[3] == '*' else allowed
    return rows


def _unit(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


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


def test_every_unit_is_on_a_floor_of_the_architecture_doc():
    floors = _floors()
    units = {_unit(p) for p in PKG.rglob('*.py')} - {'__init__', 'data'}
    assert units - set(floors) == set(), 'add these to the floors table of docs/ARCHITECTURE.md'
    assert set(floors) - units == set(), 'the floors table names units that do not exist'


def test_layers_import_only_what_the_architecture_doc_allows():
    floors = _floors()
    faces = {u for u, allowed in floors.items() if allowed == {'*'}}
    offenders = []
    for path in PKG.rglob('*.py'):
        unit = _unit(path)
        allowed = floors.get(unit, {'*'})
        for mod in _imports(path):
            parts = mod.split('.')
            if parts[0] != 'autolabel_ros' or len(parts) < 2 or parts[1] == unit:
                continue
            if parts[1] in faces or (allowed != {'*'} and parts[1] not in allowed):
                offenders.append(f'{path.relative_to(PKG)} imports {mod}')
    assert not offenders, offenders
