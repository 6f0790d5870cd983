"""Car shapes: procedural car models, SDF grids and the PCA shape prior, meshing."""
