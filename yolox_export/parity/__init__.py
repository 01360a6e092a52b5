"""Parity layer: proof that the static module (eager, and every exported backend through a runner) matches the
eager references, with every difference explained by a tie or reported as real.

Modules: ``comparison`` (subjects vs reference on batches: ``compare``), ``report`` (rows, differences, JSON), ``ties`` (tie
analysis), ``suite`` (built-in suite and recorded batches), ``runtimes`` (exported artifacts), ``plot`` (difference
plots, matplotlib) and ``run`` (one parity run end to end). The seeded batches come from ``yolox_export.scenarios``,
beside the core, which the benchmark and the tests import too.
"""

from .comparison import (COMPONENTS, RUNTIME_ULPS, SUBJECTS, TOLERANCES, Outcome, SubjectRunners, compare,
                         eager_outcome, runtime_outcome)
from .report import Difference, ParityReport, Row

__all__ = ["COMPONENTS", "RUNTIME_ULPS", "SUBJECTS", "TOLERANCES", "Difference", "Outcome", "ParityReport", "Row",
           "SubjectRunners", "compare", "eager_outcome", "runtime_outcome"]
