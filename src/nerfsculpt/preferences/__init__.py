"""Preferences: the durable ranking store, import/export, pairs and splits, agreement statistics.

``store`` (SQLite questions and answers), ``formats`` (the paper's CSVs, JSONL and CSV exports),
``pairs`` (ranked lists, pair expansion, high-quality anchors, splits), ``splits`` (the reference's
seeded partitions). Documented in ``docs/preferences.md``.
"""
