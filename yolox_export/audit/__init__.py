"""The per-target audit: which targets SimOTA leaves without cells, and why (docs/audit.md).

``result`` holds the result type (``TargetAudit``: one row per input target row, with a table) and the statuses;
``rows`` computes the static assignment's audit of an input (``static_audit``) from the padded slots' audit
(``static.audit``); the references report theirs from their own computation (``ReferenceLoss.audit``). ``totals``,
``plot`` and ``run`` serve the ``yolox-export audit`` command (matplotlib imported only to draw).
"""

from .result import COLUMNS, STATUS_MEANINGS, STATUSES, TargetAudit
from .rows import rows_of_slots, rows_of_targets, static_audit

__all__ = ["COLUMNS", "STATUSES", "STATUS_MEANINGS", "TargetAudit", "rows_of_slots", "rows_of_targets",
           "static_audit"]
