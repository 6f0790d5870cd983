"""CSS (coordinate shape space) network of SDFLabel: an image patch + instance mask -> NOCS map and
the car's proportions; its uses: a front/back heading cue and a RANSAC-Procrustes initial pose."""
