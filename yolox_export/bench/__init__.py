"""Benchmark of the static assignment + loss against the two eager references (``scripts/bench.py``).

Subjects (``SUBJECTS``): the references ``RegularYoloXLoss`` and ``FastYoloXLoss``; ``StaticYoloXLoss`` eager;
``PaddedYoloXLoss`` under ``torch.compile(fullgraph=True, dynamic=False)``; the exported ONNX graph under
onnxruntime's CPU EP. With a CUDA device also the references and the static module eager on CUDA, the padded
module captured in a CUDA graph, and the ONNX graph under onnxruntime's CUDA and TensorRT EPs. The CUDA code is
written against the documented torch / onnxruntime APIs and has never run: the development machine has no GPU, so
those subjects are skipped there and the results say so.

Measurements: ``fwd`` (assignment + loss forward under ``torch.no_grad``) and ``fwd+bwd`` (loss forward and
``backward`` to the predictions; eager torch subjects only).

Two paths (``steps``): the padded graph's forward under torch.compile and onnxruntime is timed through the runners
of ``export.runners`` (``open_runner``, then ``runner.run(feeds)``), the protocol parity compares through; what the
protocol does not cover (the references and the drop-in on ragged targets, forward + backward, the CUDA-graph
replay) is timed by the separate step builders of ``steps.BESIDE_THE_PROTOCOL``.

Method:

* Inputs come from ``make_scenario(kind, batch, (H, W), num_classes, seed)``, regenerated in every worker from the
  seed; each record carries the SHA-1 of the predictions and targets, so the JSON shows that every subject saw the
  same bytes. Every subject gets the same per-level head maps and [N, 6] targets: padded subjects (torch.compile,
  CUDA graph, onnxruntime) do ``flatten_levels`` + ``pad_targets`` inside the timed call, as the references
  flatten inside theirs. Eager modules run with their default input validation on.
* Timing: ``time.perf_counter`` around one call (CUDA: synchronised before and after). ``warmup`` untimed calls,
  then at least min(3, repeats) and at most ``repeats`` timed calls, stopping early once ``max_seconds`` of timed
  calls have been spent. Reported: median, IQR (inclusive quartiles), min and max.
* Ratios: reference median / subject median for the same case, device and measurement ("x times faster").
* Peak extra memory (CPU): by default each (case, subject) runs in a fresh subprocess. Before the measured call the
  heap is trimmed (glibc ``malloc_trim``), VmRSS is read and the resident-set high-water mark is reset (``5`` to
  ``/proc/self/clear_refs``); after it, VmHWM - VmRSS(before) is the call's peak extra resident memory. The
  measured call is the first timed call for torch subjects (torch's CPU allocator caches nothing), and the first
  call of the session for onnxruntime (its arena grows during that call and is reused afterwards). Without
  clear_refs the fallback is ru_maxrss(after) - VmRSS(before), an upper bound. CUDA (torch subjects):
  ``max_memory_allocated`` - ``memory_allocated`` after ``reset_peak_memory_stats``; onnxruntime CUDA/TensorRT
  memory is not measured. The memory multiple is peak extra / (B * G * A * 4 bytes), G the padded targets per
  image (the batch's largest count) and A the number of cells.

Modules: ``subjects``, ``settings`` (cases, presets, jobs), ``steps`` (what each subject calls), ``timing``,
``memory``, ``worker`` (subprocesses), ``onnx_cache``, ``environment``, ``targets`` (the targets, data in
``targets.toml``), ``run``, ``report`` (JSON, markdown), ``plot`` and ``profile``.
"""

from .report import render_markdown, target_lines, write_outputs
from .run import run_benchmark
from .settings import OMP_WAIT_POLICIES, PRESETS, Case, Settings, make_settings
from .subjects import SUBJECTS, Subject, unavailable_reason
from .targets import TARGETS, add_ratios, evaluate_targets
from .timing import summarise

__all__ = ["OMP_WAIT_POLICIES", "PRESETS", "SUBJECTS", "TARGETS", "Case", "Settings", "Subject", "add_ratios",
           "evaluate_targets", "make_settings", "render_markdown", "run_benchmark", "summarise", "target_lines",
           "unavailable_reason", "write_outputs"]
