"""The model core: each domain's models learn exactly once, in order, from the domain's event log in Redis.

- `keys`: the Redis key layout and connection (no River: the dashboard and benchmarks import it too).
- `event_log`: the write-ahead log of clean events, duplicate suppression, pause.
- `online_model`: `OnlineModel`, a model's deterministic state (test-then-train `learn_one`, `predict_one`).
- `tasks`: what differs between classification, regression and clustering.
- `codec`: snapshots of an `OnlineModel` to signed bytes and back (verified, allow-listed, size-limited).
- `signing`: the key that signs them (COELHO_STATE_KEY, or one generated in the embedded data directory).
- `replica`: one process's in-memory copy of a model, kept equal to the log (`ModelReplica`).
- `follower`: keeps replicas fresh by following the logs (predict-one, checkpoint).
- `batch_learner`: learns committed entries in batches off the request path (learn-one).
- `drift`: the drift watch on each model's error stream.
- `metrics`: Prometheus metrics of the models, read from Redis at scrape time.
- `registry`: checkpoints as MLflow model versions, and restoring from them.
- `ab`: A/B testing's live models, champion and challenger aliases, traffic split, and the control actions.
- `ab_outcomes`: each live model's paired test-then-train outcomes, and `compare` over them (with `comparison`).
- `ab_served`: predict-one's served answers, scored against their label on live traffic (`live_scores`).
- `ab_preferences`: the dashboard's prefer-A/B counts.
"""
