"""Verdict quality, measured through the job itself: the public benchmark sets (`benchmark_sets`, read from
`../shared/data/benchmarks`), classification scores (`scores`: AUROC, F1, ECE, ...), `evaluate` and its
variants (`evaluate_modes`, `evaluate_adaptation`, `compare_evaluations`), and per-tenant calibration
(`calibrate`). The top of `pipelines`: it may import `pipelines.job` and `pipelines.audit`.
"""
