"""Data files shipped with the package (the default shape prior, built from procedural cars)."""
