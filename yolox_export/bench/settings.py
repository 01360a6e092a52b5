"""What one benchmark run covers: the cases (seeded scenarios), the subjects and modes, how it measures; named
presets; and the jobs, one (case, subject, mode) each, that the workers run. Bad settings raise ValueError naming
the setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import MODES
from ..reference import REFERENCES
from ..scenarios import KINDS
from .onnx_cache import onnx_key
from .subjects import SUBJECTS

STRIDES = (8, 16, 32)
#: OMP_WAIT_POLICY for the workers ("default": leave the environment alone). PASSIVE by default: on a machine whose
#: cores are shared (2 vCPUs with other processes running), libgomp's spin-waiting costs ~10 ms per parallel region.
OMP_WAIT_POLICIES = ("PASSIVE", "ACTIVE", "default")


@dataclass(frozen=True)
class Case:
    """One input configuration: a seeded scenario of ``kind``."""

    kind: str
    batch: int
    image_size: tuple[int, int]
    num_classes: int
    seed: int = 0
    strides: tuple[int, ...] = STRIDES
    targets_per_image: int = 0  # 0: the kind's own counts; N: exactly N targets per image (growth with G)

    @property
    def label(self) -> str:
        fixed = f", {self.targets_per_image} targets/image" if self.targets_per_image else ""
        return f"{self.kind}, B={self.batch}, {self.image_size[0]}x{self.image_size[1]}, C={self.num_classes}{fixed}"

    @property
    def cells(self) -> int:
        return sum((self.image_size[0] // s) * (self.image_size[1] // s) for s in self.strides)


@dataclass(frozen=True)
class Settings:
    """What one benchmark run covers and how it measures."""

    kinds: tuple[str, ...]
    batches: tuple[int, ...]
    image_sizes: tuple[int, ...]
    num_classes: int
    modes: tuple[str, ...]
    subjects: tuple[str, ...]
    threads: int
    repeats: int
    warmup: int
    max_seconds: float
    seed: int
    out: Path
    isolate: bool = True
    timeout: float = 3600.0
    profile: bool = False
    preset: str = "targets"
    omp_wait_policy: str = "PASSIVE"
    targets_per_image: tuple[int, ...] = (0,)

    def cases(self) -> list[Case]:
        return [Case(kind, batch, (size, size), self.num_classes, self.seed, targets_per_image=count)
                for size in self.image_sizes for batch in self.batches for kind in self.kinds
                for count in self.targets_per_image]

    @property
    def onnx_cache(self) -> Path:
        return self.out / "onnx_cache"


#: Named configurations. "targets" is exactly the project's target configuration.
PRESETS: dict[str, dict[str, Any]] = {
    "targets": dict(kinds=("coco", "crowded"), batches=(16,), image_sizes=(640,), num_classes=80,
                    modes=MODES, threads=2, repeats=5, warmup=1, max_seconds=60.0, isolate=True),
    "quick": dict(kinds=("coco", "crowded"), batches=(2,), image_sizes=(256,), num_classes=80,
                  modes=MODES, threads=2, repeats=3, warmup=1, max_seconds=2.0, isolate=False),
    "full": dict(kinds=("coco", "crowded"), batches=(1, 8, 16, 32), image_sizes=(320, 640, 1280), num_classes=80,
                 modes=MODES, threads=2, repeats=5, warmup=1, max_seconds=60.0, isolate=True),
    # issue #22 item 8: peak memory and time against G in every mode, with the memory budget on and off, and the
    # references until one call takes longer than the timeout (their jobs are then stopped: the table says so)
    "scale": dict(kinds=("crowded",), batches=(16,), image_sizes=(640,), num_classes=80, modes=MODES,
                  subjects=(*REFERENCES, "static", "static-unchunked"), threads=2, repeats=1,
                  warmup=0, max_seconds=30.0, isolate=True, timeout=45.0, targets_per_image=(100, 300, 700, 1000)),
    # issue #11 item 5: how the megvii mode's cost grows with G (targets per image) and with the image size
    "growth": dict(kinds=("crowded",), batches=(16,), image_sizes=(320, 640, 1280), num_classes=80,
                   modes=("megvii",), subjects=("megvii", "static", "ort-cpu"), threads=2, repeats=3, warmup=1,
                   max_seconds=30.0, isolate=True, targets_per_image=(10, 25, 50, 100, 200, 400)),
}


def make_settings(preset: str = "targets", out: str | Path = "results", **overrides: Any) -> Settings:
    """Settings from a named preset with ``overrides`` (None values ignored). Raises ValueError on a bad value."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    values = dict(dict(subjects=tuple(SUBJECTS), targets_per_image=(0,)), **PRESETS[preset], seed=0, out=Path(out),
                  preset=preset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("kinds", "batches", "image_sizes", "modes", "subjects", "targets_per_image"):
        values[key] = tuple(values[key])
    settings = Settings(**values)
    check_settings(settings)
    return settings


def check_settings(s: Settings) -> None:
    """Raise ValueError naming the first bad option."""
    _check_members("kinds", s.kinds, KINDS)
    _check_members("modes", s.modes, MODES)
    _check_members("subjects", s.subjects, tuple(SUBJECTS))
    _check_positive("batches", s.batches)
    _check_positive("image_sizes", s.image_sizes)
    bad = [size for size in s.image_sizes if size % max(STRIDES)]
    if bad:
        raise ValueError(f"image_sizes: {bad} not divisible by the largest stride {max(STRIDES)}")
    _check_positive("num_classes", (s.num_classes,))
    _check_volume(s)
    bad = [n for n in s.targets_per_image if isinstance(n, bool) or not isinstance(n, int) or n < 0]
    if bad or not s.targets_per_image:
        raise ValueError(f"targets_per_image: expected integers >= 0 (0: the kind's own counts), got {bad or '[]'}")
    _check_positive("threads", (s.threads,))
    _check_positive("repeats", (s.repeats,))
    if s.warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {s.warmup}")
    _check_members("omp_wait_policy", (s.omp_wait_policy,), OMP_WAIT_POLICIES)
    if not s.max_seconds > 0 or not s.timeout > 0:
        raise ValueError(f"max_seconds and timeout must be > 0, got {s.max_seconds} and {s.timeout}")


def _check_volume(s: Settings) -> None:
    """ValueError for a batch over the exporter's bound, or a predictions tensor [B, A, 5 + C] over
    ``presets.TENSOR_ELEMENT_LIMIT`` elements (the graphs' limit, and past anything a benchmark can hold)."""
    from ..export.presets import BATCH_LIMIT, TENSOR_ELEMENT_LIMIT

    bad = [b for b in s.batches if b > BATCH_LIMIT]
    if bad:
        raise ValueError(f"batches: {bad} over {BATCH_LIMIT}, the exported graphs' largest batch")
    cells = max(sum((size // stride) ** 2 for stride in STRIDES) for size in s.image_sizes)
    elements = max(s.batches) * cells * (5 + s.num_classes)
    if elements > TENSOR_ELEMENT_LIMIT:
        raise ValueError(f"batches, image_sizes, num_classes: predictions [B, A, 5 + C] = [{max(s.batches)}, {cells}, "
                         f"{5 + s.num_classes}] hold {elements} elements, over {TENSOR_ELEMENT_LIMIT}")


def _check_members(option: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    if not values:
        raise ValueError(f"{option}: give at least one value")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{option}: unknown {unknown}; choose from {list(allowed)}")


def _check_positive(option: str, values: Sequence[int]) -> None:
    if not values:
        raise ValueError(f"{option}: give at least one value")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ValueError(f"{option}: expected integers >= 1, got {bad}")


@dataclass(frozen=True)
class Job:
    """One (case, subject, mode) measured in one process. ``mode`` is the static mode, or the reference's own."""

    case: Case
    subject: str
    mode: str
    threads: int
    repeats: int
    warmup: int
    max_seconds: float
    onnx_path: str | None = None
    cache_dir: str | None = None
    spinning: bool = True  # onnxruntime intra-op spin-waiting (off with OMP_WAIT_POLICY=PASSIVE)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Job":
        case = dict(data["case"], image_size=tuple(data["case"]["image_size"]), strides=tuple(data["case"]["strides"]))
        return cls(**dict(data, case=Case(**case)))


def plan_jobs(settings: Settings, onnx_paths: dict[tuple, str]) -> list[Job]:
    """Every (case, subject, mode) to run, references once per case, static subjects once per mode."""
    jobs = []
    for case in settings.cases():
        for name in settings.subjects:
            subject = SUBJECTS[name]
            modes = settings.modes if subject.per_mode else (subject.reference_mode,)
            for mode in modes:
                path = onnx_paths.get(onnx_key(case, mode, subject.with_grad, subject.with_audit)) if subject.family == "ort" else None
                jobs.append(Job(case, name, mode, settings.threads, settings.repeats, settings.warmup,
                                settings.max_seconds, path, str(settings.onnx_cache),
                                spinning=settings.omp_wait_policy != "PASSIVE"))
    return jobs
