"""Shared core: earth models and travel times, the layer-matrix propagator, moveout, deconvolution,
NetCDF artifacts and generic metrics. Imports no stage."""
