"""Input and output at the edges: conversation logs read from Parquet into validated `Conversation`s (with dead
letters for bad input), and verdict and dead-letter rows written as Hive-partitioned Parquet.

Reading: `input_files` lists, `input_plan` prunes by day (`date_window`, `partition_days`) before anything is
opened, `file_splits` cuts large files, `read_logs` reads (`log_schema`, `column_map`, `log_rows`,
`validate_logs`, `normalise`, `conversation_ids`). Writing: `write_partitions`. Imports only `transforms.records`
and `transforms.stores` from the project.
"""
