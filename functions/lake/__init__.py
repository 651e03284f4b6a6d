"""The lake: every event of the three streams in Delta tables on the S3 store, and read-only SQL over them.

- `tables`: where each domain's table lives and how to reach the S3 store (no Delta import: cheap for everyone).
- `rows`: an event as a row of its table, the columns from the domain's declaration.
- `store`, `writer`, `maintenance`, `metrics`, `service`: the lake function (`python -m functions.lake`), which
  writes each record and label exactly once in micro-batches.
"""
