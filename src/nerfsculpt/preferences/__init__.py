"""Preferences: the durable ranking store, import/export, pairs and splits, agreement statistics.

``store`` (SQLite questions and answers), ``formats`` (the paper's CSVs, JSONL and CSV exports),
``pairs`` (ranked lists, pair expansion, high-quality anchors, splits), ``splits`` (the reference's
seeded partitions), ``studies`` (creating ranking and A/B studies). Documented in
``docs/preferences.md``.

Creating studies from Python (the calls behind ``label new`` and ``study new``)::

    from nerfsculpt.preferences import ranking_study_from_bank, create_ab_study
    ranking_study_from_bank("prefs.sqlite", "bank/")
"""

from nerfsculpt.preferences.studies import (
    ABStudyConfig,
    RankingStudyConfig,
    create_ab_study,
    ranking_study_from_bank,
)

__all__ = ["ABStudyConfig", "RankingStudyConfig", "create_ab_study", "ranking_study_from_bank"]
