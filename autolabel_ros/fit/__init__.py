"""The differentiable core: silhouette rendering, energies, ground plane, batched optimization."""
