"""Policy + conversation → the RSafe prompt: `render` (the templates, pure functions) and `units` (a conversation
and its tenant's policy → budget-fitted, keyed moderation units, and the DoFn that makes them). One copy, used by
the job and by training. Imports `policies` and the `transforms` sub-packages below it (`engines` for the seam's
tokenizer, `io` for normalisation, `stores`).
"""
