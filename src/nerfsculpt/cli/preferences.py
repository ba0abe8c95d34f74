"""``nerfsculpt prefs|label|study ...``: preference databases, the labeling app and user studies.

Imports nothing heavy at import time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nerfsculpt.cli.common import (
    HelpFormatter,
    UsageError,
    add_config_options,
    add_run_options,
    command_group,
    config_from_args,
    resolve_device,
    usage,
)


def _open_store(path: str, create: bool = False):
    """The database at ``path``; with ``create``, a missing one appears only if the command succeeds."""
    from nerfsculpt.preferences.store import PreferenceStore, open_or_create

    if create:
        return open_or_create(path)
    try:
        return PreferenceStore(path, create=False)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None


def cmd_prefs_import(args: argparse.Namespace) -> int:
    """Import preferences into a database (created if missing); each file is all-or-nothing, and a
    failed import (or a CSV without questions) creates and changes nothing.

        nerfsculpt prefs import ../shared/data/rankedseedsall.csv --db paper.sqlite
        nerfsculpt prefs import rankings_records.csv --db old.sqlite --study pilot-2024
        nerfsculpt prefs import export.jsonl --db copy.sqlite

    Formats (detected from the first line unless --format is given): the paper's ranked-seeds CSV
    (',rank1,rank2': winner and loser seed per row; seeds of ffhq512-128.pkl at psi 1.0, cutoff 14,
    const noise, canonical camera), the reference app's legacy questionnaire CSV
    ('index,seed1..seed7,completed,n_in_row,rank1..rank7'; incomplete rows skipped) and a
    nerfsculpt JSONL export.
    """
    from nerfsculpt.preferences import formats

    source = Path(args.file)
    if not source.is_file():
        raise UsageError(f"{source} is not a file")
    kind = formats.detect_format(source) if args.format == "auto" else args.format
    sampling = dict(generator=args.generator, generator_hash=args.generator_hash, psi=args.psi,
                    cutoff=None if args.cutoff < 0 else args.cutoff, noise_mode=args.noise_mode)
    with _open_store(args.db, create=True) as store:
        if kind == "ranked-seeds":
            n = formats.import_ranked_seeds(store, source, study=args.study or "paper",
                                            annotator=args.annotator or "paper", **sampling)
            print(f"imported {n} questions with one best/worst answer each into study "
                  f"{args.study or 'paper'!r} of {args.db}")
        elif kind == "legacy":
            counts = formats.import_legacy_questionnaire(store, source, study=args.study or source.stem,
                                                         annotator=args.annotator or "legacy", **sampling)
            print(f"imported {counts['imported']} ranked questions ({counts['skipped']} incomplete rows skipped) "
                  f"into study {args.study or source.stem!r} of {args.db}")
        else:
            counts = formats.import_jsonl(store, source)
            print(f"imported {counts['study']} studies, {counts['question']} questions and {counts['answer']} "
                  f"answers into {args.db}")
    return 0


def cmd_prefs_export(args: argparse.Namespace) -> int:
    """Export a database: everything as JSONL, preference pairs as CSV, or the paper's ranked-seeds CSV.

        nerfsculpt prefs export --db prefs.sqlite --out prefs.jsonl
        nerfsculpt prefs export --db prefs.sqlite --format pairs-csv --pairs full --out pairs.csv
        nerfsculpt prefs export --db paper.sqlite --format ranked-seeds --study paper --out rankedseeds.csv

    Files are written atomically. JSONL round-trips exactly through 'prefs import'.
    """
    from nerfsculpt.preferences import formats

    with _open_store(args.db) as store:
        if args.study is not None:
            store.study(args.study)
        if args.format == "jsonl":
            n = formats.export_jsonl(store, args.out)
            print(f"wrote {n} lines to {args.out}")
        elif args.format == "pairs-csv":
            n = formats.export_pairs_csv(store, args.out, mode=args.pairs, study=args.study)
            print(f"wrote {n} preference pairs ({args.pairs}) to {args.out}")
        else:
            if args.study is None:
                raise UsageError("--format ranked-seeds needs --study")
            n = formats.export_ranked_seeds(store, args.out, args.study)
            print(f"wrote {n} best/worst rows to {args.out}")
    return 0


def cmd_prefs_split(args: argparse.Namespace) -> int:
    """Show the train / val / test partitions the reward model will use, and their pair counts.

        nerfsculpt prefs split --db paper.sqlite --study paper               # 3042 / 652 / 652 (reference)
        nerfsculpt prefs split --db prefs.sqlite --study pilot --by annotator --pairs full

    Questions are split 70 / 15 / 15 with the reference's seeded permutation (scikit-learn's
    train_test_split(random_state=42) twice); with --by annotator, people are held out instead.
    With anchors (the default, as the paper), each list gets one high-quality anchor (seeds
    100000-100999 at psi 0.25, split 700 / 150 / 150), so a best/worst list gives 3 pairs.
    """
    from nerfsculpt.preferences.pairs import add_anchors, anchor_items, expand_pairs, ranked_lists, split_lists

    with _open_store(args.db) as store:
        lists = ranked_lists(store, store.answers(study=args.study), args.pairs)
        if not lists:
            raise UsageError(f"study {args.study!r} has no decided answers yet")
        generator = lists[0].items[0].generator
        parts = split_lists(lists, by=args.by, seed=args.seed)
    summary: dict[str, Any] = {"study": args.study, "by": args.by, "pairs": args.pairs, "anchors": not args.no_anchors}
    for name, part in parts.items():
        if not args.no_anchors:
            part = add_anchors(part, anchor_items(generator, name), seed=0)
        summary[name] = {"lists": len(part), "pairs": len(expand_pairs(part)),
                         "questions": len({r.question_id for r in part})}
    print(json.dumps(summary, indent=2))
    return 0


def cmd_prefs_stats(args: argparse.Namespace) -> int:
    """Summarise a study: answers per annotator, agreement, self-consistency, Bradley-Terry ranking.

        nerfsculpt prefs stats --db prefs.sqlite                  # the database's only study
        nerfsculpt prefs stats --db prefs.sqlite --study pilot
        nerfsculpt prefs stats --db prefs.sqlite --study pilot --json stats.json

    Agreement compares annotators on the item pairs both ordered in the same question (expected
    p^2 + (1-p)^2 for two Bradley-Terry annotators); Krippendorff's alpha (nominal) uses one unit
    per (question, item pair); self-consistency uses repeated questions.
    """
    from nerfsculpt.preferences import agreement
    from nerfsculpt.preferences.pairs import expand_pairs, ranked_lists

    with _open_store(args.db) as store:
        name = store.choose_study(args.study)
        study = store.study(name)
        answers = store.answers(study=name)
        rate, comparisons = agreement.pairwise_agreement(store, answers)
        per_annotator = {}
        for annotator in store.annotators(name):
            mine = [a for a in answers if a.annotator == annotator]
            per_annotator[annotator] = {"answers": len(mine), "cant_decide": sum(a.cant_decide for a in mine)}
        pairs = expand_pairs(ranked_lists(store, answers, "full"))
        items = {i: it for q in store.questions(name) for i, it in zip(q.item_ids, q.items, strict=True)}
        ids = {it: i for i, it in items.items()}
        strengths = agreement.bradley_terry([(ids[p.winner], ids[p.loser]) for p in pairs])
        ranked = sorted(strengths.items(), key=lambda kv: -kv[1])
        stats = {
            "study": name, "kind": study["kind"], "overlap": study["overlap"],
            "questions": study["questions"], "answers": len(answers), "annotators": per_annotator,
            "pairwise_agreement": {"rate": rate, "comparisons": comparisons},
            "krippendorff_alpha": agreement.answers_alpha(store, answers),
            "self_consistency": {k: {"rate": r, "comparisons": n}
                                 for k, (r, n) in agreement.self_consistency(store, answers).items()},
            "bradley_terry": {"items": len(strengths),
                              "best": [{"seed": items[i].seed, "psi": items[i].psi, "strength": s}
                                       for i, s in ranked[: args.top]],
                              "worst": [{"seed": items[i].seed, "psi": items[i].psi, "strength": s}
                                        for i, s in ranked[::-1][: args.top]]},
        }
    text = json.dumps(_finite(stats), indent=2)
    if args.json:
        from nerfsculpt.atomic import write_atomic

        write_atomic(args.json, (text + "\n").encode())
    print(text)
    return 0


def cmd_label_new(args: argparse.Namespace) -> int:
    """Create a ranking study over the seeds of a sample bank (with renders) in a preference database.

        nerfsculpt sample --seeds 0-29 --what renders --out bank/     # the default synthetic generator
        nerfsculpt label new --bank bank/ --db prefs.sqlite --questions 40
        nerfsculpt label new --bank bank/ --db prefs.sqlite --study pilot --items 4 --questions 100 --overlap 3
        nerfsculpt label serve --db prefs.sqlite

    Question sizes are drawn from --items (2-6, the paper's app); the seeds shown least so far fill
    each question (balanced exposure) in random positions; --overlap K asks each question of K
    different annotators; --repeats R asks R questions again (shuffled) to measure self-consistency.
    """
    from nerfsculpt.preferences.studies import RankingStudyConfig, ranking_study_from_bank

    created = ranking_study_from_bank(args.db, args.bank, config_from_args(RankingStudyConfig, args), study=args.study)
    print(f"study {created.name!r}: {created.questions} questions over {created.seeds} seeds of {args.bank} in "
          f"{args.db}; start labeling with: nerfsculpt label serve --db {args.db}")
    return 0


def cmd_label_serve(args: argparse.Namespace) -> int:
    """Serve the labeling page for a study of a preference database (Ctrl-C to stop; answers are saved
    as they are given, so stopping and serving again resumes where each annotator left off).

        nerfsculpt label serve --db prefs.sqlite                         # http://127.0.0.1:8765
        nerfsculpt label serve --db prefs.sqlite --study pilot --port 9000
        nerfsculpt label serve --db prefs.sqlite --host ::1              # IPv6 loopback: http://[::1]:8765
        nerfsculpt label serve --db prefs.sqlite --host 0.0.0.0          # LAN: prints a URL with a token

    Keys: 1-6 pick (best, then worst; or in order with 'rank fully'), 0 can't decide, U undo,
    S skip, R colour images, F rank fully. Binding beyond loopback requires a token (made up
    and printed when --token is not given). The URL is printed once the port is bound.
    """
    import errno
    import secrets
    import socket

    import uvicorn

    from nerfsculpt.app.server import create_app

    if not Path(args.db).is_file():
        raise UsageError(f"no preference database at {args.db}; create a study with 'nerfsculpt label new'")
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    token = args.token or (None if loopback else secrets.token_urlsafe(16))
    app = create_app(args.db, study=args.study, token=token)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)  # bound as uvicorn would
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except (OSError, OverflowError) as error:
        sock.close()
        app.state.service.close()
        if getattr(error, "errno", None) == errno.EADDRINUSE:
            raise UsageError(f"port {args.port} on {args.host} is in use; pass --port with a free port "
                             f"(e.g. --port {args.port + 1})") from None
        raise UsageError(f"cannot listen on {args.host} port {args.port} ({error}); pass another --host or --port"
                         ) from None
    url = _serve_url(args.host, sock.getsockname()[1], token)
    print(f"serving study {app.state.service.study!r} of {args.db} at {url}  (Ctrl-C to stop)", flush=True)
    with sock:
        uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")).run(sockets=[sock])
    return 0


def _serve_url(host: str, port: int, token: str | None) -> str:
    """The page's address: an IPv6 host in brackets (``http://[::1]:8765/``), the token as a query."""
    from urllib.parse import quote

    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}/" + (f"?token={quote(token)}" if token else "")


def cmd_study_new(args: argparse.Namespace) -> int:
    """Create an A/B user study: the same latents from two generators, side by side, sides randomised.

        nerfsculpt study new --before synthetic --after runs/tuned/final --seeds 0-39 --db study.sqlite
        nerfsculpt label serve --db study.sqlite            # respondents pick left / right / no preference
        nerfsculpt study report --db study.sqlite           # the paper's Table 3, h, binomial test, CI

    Shaded geometry renders (front, three-quarter, profile) and RGB images of every seed are written
    for both generators to sample banks in --banks (default: DB's name + '_banks/STUDY/before|after';
    resumable). Every respondent may answer every pair (--overlap: how many respondents per pair;
    the paper: 17 respondents x 40 pairs).
    """
    from nerfsculpt.latents import parse_seeds
    from nerfsculpt.preferences.studies import ABStudyConfig, create_ab_study

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as error:
        raise UsageError(f"--seeds: {error}") from None
    created = create_ab_study(args.db, args.before, args.after, seeds, config_from_args(ABStudyConfig, args),
                              study=args.study, banks=args.banks, device=resolve_device(args.device),
                              progress=not args.no_progress)
    print(f"study {created.name!r}: {created.questions} A/B pairs ({args.before} vs {args.after}) in {args.db}; "
          f"serve it with: nerfsculpt label serve --db {args.db} --study {args.study}")
    return 0


def cmd_study_report(args: argparse.Namespace) -> int:
    """The user study's results: Table 3 of the paper, Cohen's h, exact binomial test and 95 % CI.

        nerfsculpt study report --db study.sqlite
        nerfsculpt study report --counts 506,141,33        # from counts: the paper's 0.744 / 0.207 / 0.049, h 1.135

    Proportions are over all answers (tuned / original / no preference); the preference rate, its
    exact two-sided binomial test against 50 % and its Clopper-Pearson interval exclude the ties.
    One row overall and one per respondent.
    """
    from nerfsculpt.preferences import user_study

    if args.counts:
        counts = {"all": _parse_counts(args.counts)}
    else:
        if not args.db:
            raise UsageError("pass --db STUDY.sqlite (or --counts TUNED,ORIGINAL,NONE)")
        with _open_store(args.db) as store:
            study = args.study or next((s["name"] for s in store.studies() if s["kind"] == "ab"), None)
            if study is None:
                raise UsageError(f"{args.db} has no A/B study; create one with 'nerfsculpt study new'")
            counts = user_study.counts_from_store(store, study)
            if not counts:
                raise UsageError(f"study {study!r} has no answers yet")
    reports = {key: user_study.report(c, args.confidence) for key, c in counts.items()}
    print(user_study.format_table(reports))
    if args.json:
        from nerfsculpt.atomic import write_atomic

        write_atomic(args.json, (json.dumps(reports, indent=2) + "\n").encode())
    return 0


def _parse_counts(text: str):
    """``--counts TUNED,ORIGINAL,NONE`` -> ``user_study.StudyCounts``."""
    from nerfsculpt.preferences.user_study import StudyCounts

    try:
        values = [int(field) for field in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 0:
        raise UsageError(f"--counts must be three non-negative integers TUNED,ORIGINAL,NONE (answers preferring the "
                         f"tuned generator, the original, neither; e.g. the paper's 506,141,33), got {text!r}")
    try:
        return StudyCounts(*values)
    except ValueError as error:
        raise UsageError(f"--counts: {error}") from None


def _finite(value: Any) -> Any:
    """NaN (undefined statistics, e.g. agreement with one annotator) -> None, so the JSON is valid."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _subcommand(group: Any, common: argparse.ArgumentParser, name: str, help: str, handler: Any,
                command: str, db_required: bool = True) -> argparse.ArgumentParser:
    """A subcommand whose description is its handler's docstring, with the --db option."""
    q = group.add_parser(name, parents=[common], help=help, description=usage(handler.__doc__),
                         formatter_class=HelpFormatter)
    q.add_argument("--db", required=db_required, metavar="SQLITE", help="preference database (SQLite)")
    q.set_defaults(handler=handler, command=command)
    return q


def add_prefs_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    group = command_group(subparsers, common, "prefs", "import, export, split and summarise preferences",
                          "Preference databases: import the paper's data, export, split, stats.\n\n"
                          "    nerfsculpt prefs import rankedseedsall.csv --db paper.sqlite")

    q = _subcommand(group, common, "import", "import a CSV or JSONL file", cmd_prefs_import, "prefs import")
    q.add_argument("file", help="ranked-seeds CSV, legacy questionnaire CSV, or nerfsculpt JSONL")
    q.add_argument("--format", choices=("auto", "ranked-seeds", "legacy", "jsonl"), default="auto",
                   help="input format")
    q.add_argument("--study", default=None, help="study name for CSV imports (default: 'paper' or the file name)")
    q.add_argument("--annotator", default=None, help="annotator of CSV imports (default: 'paper' or 'legacy')")
    q.add_argument("--generator", default="ffhq512-128.pkl", help="generator id the CSV seeds refer to")
    q.add_argument("--generator-hash", default="", help="content hash of that generator, if known")
    q.add_argument("--psi", type=float, default=1.0, help="truncation psi of the CSV seeds (paper: 1.0)")
    q.add_argument("--cutoff", type=int, default=14, help="truncation cutoff of the CSV seeds (-1: none)")
    q.add_argument("--noise-mode", default="const", help="noise mode of the CSV seeds")

    q = _subcommand(group, common, "export", "export to JSONL or CSV", cmd_prefs_export, "prefs export")
    q.add_argument("--out", required=True, help="output file")
    q.add_argument("--format", choices=("jsonl", "pairs-csv", "ranked-seeds"), default="jsonl", help="output format")
    q.add_argument("--study", default=None, help="only this study (CSV formats)")
    q.add_argument("--pairs", choices=("best_worst", "full"), default="best_worst",
                   help="pairs-csv: best-vs-worst only (paper) or every pair of full rankings")

    q = _subcommand(group, common, "split", "show the train/val/test partitions", cmd_prefs_split, "prefs split")
    q.add_argument("--study", required=True, help="study to split")
    q.add_argument("--by", choices=("question", "annotator"), default="question", help="unit of the split")
    q.add_argument("--pairs", choices=("best_worst", "full"), default="best_worst", help="pair expansion")
    q.add_argument("--no-anchors", action="store_true", help="do not prepend high-quality anchors")
    q.add_argument("--seed", type=int, default=42, help="random_state of the split (reference: 42)")

    q = _subcommand(group, common, "stats", "agreement and Bradley-Terry summary of a study", cmd_prefs_stats,
                    "prefs stats")
    q.add_argument("--study", default=None, help="study to summarise (default: the database's only study)")
    q.add_argument("--top", type=int, default=5, help="items listed at each end of the Bradley-Terry ranking")
    q.add_argument("--json", default=None, metavar="FILE", help="also write the statistics to this file")


def add_label_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.preferences.studies import RankingStudyConfig

    group = command_group(subparsers, common, "label", "create a ranking study and serve the labeling page",
                          "Collect rankings in a local web app.\n\n"
                          "    nerfsculpt label new --bank bank/ --db prefs.sqlite\n"
                          "    nerfsculpt label serve --db prefs.sqlite")
    q = _subcommand(group, common, "new", "create a ranking study from a sample bank", cmd_label_new, "label new")
    q.add_argument("--bank", default="bank", help="sample bank with renders ('nerfsculpt sample ... --out BANK')")
    q.add_argument("--study", default=None, help="study name (default: the bank directory's name)")
    add_config_options(q, RankingStudyConfig, metavars={"items": "K|LO-HI"})

    q = _subcommand(group, common, "serve", "serve the labeling page", cmd_label_serve, "label serve")
    q.add_argument("--study", default=None, help="study to serve (default: the database's only study)")
    q.add_argument("--host", default="127.0.0.1", help="interface to bind")
    q.add_argument("--port", type=int, default=8765, help="TCP port")
    q.add_argument("--token", default=None, help="access token (default: none on loopback, random otherwise)")


def add_study_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from nerfsculpt.preferences.studies import ABStudyConfig

    group = command_group(subparsers, common, "study", "A/B user study of two generators (paper Table 3)",
                          "Compare two generators with people: A/B questions served by the labeling app.\n\n"
                          "    nerfsculpt study new --before synthetic --after runs/tuned/final --seeds 0-39 "
                          "--db study.sqlite\n"
                          "    nerfsculpt study report --db study.sqlite")
    q = _subcommand(group, common, "new", "create an A/B study of two generators", cmd_study_new, "study new")
    q.add_argument("--before", default="synthetic", help="original generator (built-in name or checkpoint)")
    q.add_argument("--after", required=True, help="fine-tuned generator (built-in name or checkpoint)")
    q.add_argument("--seeds", required=True, help="seeds of the pairs, e.g. 0-39 or 1,5,9")
    q.add_argument("--study", default="user-study", help="study name")
    q.add_argument("--banks", default=None, help="where the renders go (default: DB name + '_banks/STUDY')")
    add_config_options(q, ABStudyConfig)
    add_run_options(q)

    q = _subcommand(group, common, "report", "Table 3: proportions, Cohen's h, binomial test, CI", cmd_study_report,
                    "study report", db_required=False)
    q.add_argument("--study", default=None, help="A/B study (default: the database's first)")
    q.add_argument("--counts", default=None, metavar="T,O,N",
                   help="report these answer counts instead of a database: tuned, original, no preference")
    q.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval")
    q.add_argument("--json", default=None, metavar="FILE", help="also write the report to this file")


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register the prefs, label and study command groups."""
    add_prefs_commands(subparsers, common)
    add_label_commands(subparsers, common)
    add_study_commands(subparsers, common)
