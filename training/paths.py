"""Where training reads its data. Nothing here is copied into the repo; runs go under `runs/` (git-ignored)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_TRAIN_DIR = SHARED_DATA / "train"
DEFAULT_BENCHMARKS_DIR = SHARED_DATA / "benchmarks"
DEFAULT_RUN_DIR = REPO_ROOT / "runs" / "training"
