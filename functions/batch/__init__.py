"""Batch ML studies: scikit-learn models trained on a lake table at a recorded version, compared with River.

functions/batch/study.py reads the table, splits it by time, trains and scores the batch models and replays the
domain's River model over the same events; functions/batch/diagnostics.py draws the figures; report.py reads the
studies back from MLflow.
"""
