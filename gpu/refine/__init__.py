"""Refinement of spectral topics by variational EM or CVB0 (:func:`refine_topics`)."""
from gpu.refine.refinement import METHOD_DEFAULTS, refine_topics
from gpu.refine.starts_and_scoring import RefineResult

__all__ = ["METHOD_DEFAULTS", "RefineResult", "refine_topics"]
