"""What auditors read after a run, from its published verdicts: the audit report (`report`, with its Polars
queries `report_queries`, `report_plots`, `report_html`), the OpenAI Moderation export (`export`), the
human-review loop (`review`, with `label_agreement`) and their shared command-line checks (`cli`). Imports
`pipelines.job` below it, never `pipelines.evaluation`.
"""
