"""The engine seam and what sits behind it: `protocol` (the one seam between the pipeline and an engine: load once
per worker, run a batch), `vllm_engine` (the real one; `vllm_requests`, `offline_exit`), `fake_engine` (plumbing
tests and benchmarks only), the embedded models and their decision head (`embedded_model`, `decision_head`,
`served_head`, `feature_reader`: the pooling engine a multi-layer head is trained and served on, the committed
`embedded_guard/`), CPU serving choices (`cpu_cores`, `cpu_serving`) and what the model's tokenizer makes of text
(`chat_format`, `special_tokens`). Imports only `transforms.records`, `transforms.stores` and `transforms.io`.
"""
