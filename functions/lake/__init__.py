"""The lake: every event of the three streams in Delta tables on the S3 store, and read-only SQL over them.

- `tables`: where each domain's table lives and how to reach the S3 store (no Delta import: cheap for everyone).
"""
