"""Batch ML studies: scikit-learn models trained on a lake table at a recorded version, compared with River.

functions/batch/study.py runs a study: dataset.py reads the table and splits it by time, features.py computes the
domain's features on columns, models.py holds the batch models, online.py replays the domain's River model over the
same events, scores.py scores both; diagnostics.py draws the figures; report.py logs the studies to MLflow and reads
them back.
"""
