"""Data model and geometry shared by every layer (numpy only, no ROS, no torch).

The data model is loaded on first use (PEP 562), so ``core.interrupts`` (stdlib only) imports
without numpy: the console scripts import it first, to catch a Ctrl-C while the libraries load."""
__all__ = ['Label3D', 'LabelResult', 'Mesh', 'Prompt', 'SensorFrame']


def __getattr__(name):
    if name in __all__:
        from autolabel_ros.core import types
        return getattr(types, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
