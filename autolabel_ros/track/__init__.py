"""Drives, not snapshots: ego motion, tracks across frames, track-level refinement.

:func:`autolabel_ros.track.sequence.track_sequence` turns the per-frame labels of a drive (what
``Autolabeler.label`` gives, unchanged) into tracked labels; :mod:`autolabel_ros.track.ego` gives
the ego poses it needs (from /tf, KITTI OXTS, or ICP).
"""
