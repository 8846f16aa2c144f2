"""The LoFTR family's models and building blocks. `load_matcher` is the Python API (models/matcher.py);
`AffineSimulation` wraps any matcher to match severe tilts (models/affine.py)."""

from .affine import AffineSimulation, AffineSimulationConfig
from .matcher import load_matcher

__all__ = ["AffineSimulation", "AffineSimulationConfig", "load_matcher"]
