"""The LoFTR family's models and building blocks. `load_matcher` is the Python API (models/matcher.py)."""

from .matcher import load_matcher

__all__ = ["load_matcher"]
