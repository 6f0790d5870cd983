"""Command-line faces: autolabel-eval, -sim, -kitti, -build-prior, -bag."""
