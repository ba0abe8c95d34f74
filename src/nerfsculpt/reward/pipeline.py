"""From a preference database to reward training inputs: splits, anchors, extraction, slab source.

:func:`train_reward` and :func:`evaluate_reward` are the library calls behind ``nerfsculpt reward train``
and ``reward eval``; both see the same partition:

- answers of one study -> ranked lists (``best_worst``, the paper, or ``full`` rankings);
- split by question (the reference's seeded 70/15/15 partition: 3,042 / 652 / 652 on the paper's
  data) or by annotator;
- anchors per partition: seeds 100000-100999 at psi 0.25 split 700/150/150 (docs/method/reference_method.md
  §3.3), as items of the study's generator;
- the extraction (slab crop, grid, latent rules) recorded in the bundle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from nerfsculpt.geometry.slab import REWARD_SLAB
from nerfsculpt.preferences.pairs import anchor_items, ranked_lists, split_lists
from nerfsculpt.preferences.splits import ANCHOR_PSI
from nerfsculpt.preferences.store import PreferenceStore
from nerfsculpt.reward.bundle import BundleError, Extraction
from nerfsculpt.reward.config import MODELS, EnsembleConfig, RewardDataConfig, RewardModelConfig, RewardTrainConfig
from nerfsculpt.reward.data import InputSource
from nerfsculpt.reward.train import Splits, data_fingerprint

log = logging.getLogger(__name__)


def study_generator(store: PreferenceStore, study: str) -> tuple[str, str, dict[str, Any]]:
    """(generator spec, fingerprint, sampling) shared by every item of the study; BundleError if mixed."""
    items = {item for question in store.questions(study) for item in question.items}
    if not items:
        raise BundleError(f"study {study!r} has no questions")
    generators = {(i.generator, i.generator_hash) for i in items}
    if len(generators) != 1:
        raise BundleError(f"study {study!r} mixes items of {len(generators)} generators {sorted(generators)}; "
                          f"a reward is trained on one generator's geometry")
    sampling = {(float(i.psi), i.cutoff, i.noise_mode) for i in items if i.kind == "regular"}
    if len(sampling) != 1:
        raise BundleError(f"study {study!r} mixes sampling settings (psi, cutoff, noise) {sorted(sampling)}")
    (spec, fingerprint), ((psi, cutoff, noise),) = generators.pop(), sampling
    return spec, fingerprint, {"psi": psi, "cutoff": cutoff, "noise_mode": noise}


def extraction_for(store: PreferenceStore, study: str, slab_resolution: int = REWARD_SLAB.resolution,
                   eg3d_grid: bool = True, representation: str = "sigma_slab") -> Extraction:
    """The extraction of a study's items: the reference slab at ``slab_resolution`` and the items' latent rules."""
    _, _, sampling = study_generator(store, study)
    slab = dataclasses.replace(REWARD_SLAB, resolution=slab_resolution)
    return Extraction(representation=representation, slab=dataclasses.asdict(slab), eg3d_grid=eg3d_grid,
                      psi=sampling["psi"], anchor_psi=ANCHOR_PSI, truncation_cutoff=sampling["cutoff"],
                      noise_mode=sampling["noise_mode"])


def splits_from_store(store: PreferenceStore, study: str, mode: str = "best_worst", by: str = "question",
                      seed: int = 42) -> Splits:
    """Ranked lists of a study split 70/15/15 (seeded as the reference), with each partition's anchors."""
    spec, fingerprint, sampling = study_generator(store, study)
    lists = ranked_lists(store, store.answers(study), mode=mode)
    if not lists:
        raise BundleError(f"study {study!r} has no decided answers to train on")
    parts = split_lists(lists, by=by, seed=seed)
    anchors = {name: anchor_items(spec, name, fingerprint, psi=ANCHOR_PSI, cutoff=sampling["cutoff"])
               for name in ("train", "val", "test")}
    return Splits(train=parts["train"], val=parts["val"], test=parts["test"], anchors=anchors)


def build_model(name: str, resnet_weights: str | None = None, train_backbone: bool = False):
    """The network of a ``--model`` name; depth models optionally start from a torchvision ``resnet50`` file."""
    from nerfsculpt.reward.baselines import DepthResNetReward, DepthRewardConfig, PointReward, PointRewardConfig
    from nerfsculpt.reward.sigma_net import SIGMA_PRESETS, SigmaRewardNet

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    if resnet_weights is not None and not name.startswith("depth"):
        raise ValueError("--resnet-weights only applies to the depth models (depth1, depth3)")
    if name in SIGMA_PRESETS:
        return SigmaRewardNet(SIGMA_PRESETS[name])
    if name.startswith("point"):
        return PointReward(PointRewardConfig(architecture=name))
    net = DepthResNetReward(DepthRewardConfig(views=1 if name == "depth1" else 3, frozen=not train_backbone))
    if resnet_weights is not None:
        from nerfsculpt.reward.bundle import read_state_dict

        net.backbone.load_torchvision(read_state_dict(resnet_weights))
    return net



def open_study(db: str | Path, study: str | None = None) -> tuple[PreferenceStore, str]:
    """The preference database at ``db`` (it must exist) and the study to use (None: its only study)."""
    try:
        store = PreferenceStore(db, create=False)
    except FileNotFoundError as error:
        raise BundleError(str(error)) from None
    return store, store.choose_study(study)


def input_source(data: RewardDataConfig, extraction: Extraction, store: PreferenceStore, study: str, device: Any,
                 cache_dir: str | Path | None) -> InputSource:
    """Where the reward's raw inputs come from: banks (``data.bank``, one per psi; needed for depth maps and
    point clouds) or, for sigma slabs, the study's generator (``data.generator`` overrides its spec)."""
    from nerfsculpt.reward.data import BankInputs, GeneratorSlabs

    if data.bank:
        from nerfsculpt.geometry.bank import open_bank

        return BankInputs([open_bank(b) for b in data.bank], extraction)
    if extraction.representation != "sigma_slab":
        raise BundleError(f"{extraction.representation} rewards read sample banks: pass --bank (one per psi, made "
                          f"with 'nerfsculpt sample --what depth,points ...')")
    from nerfsculpt.generator.builtin import resolve_generator

    spec, fingerprint, _ = study_generator(store, study)
    G, info = resolve_generator(data.generator or spec, device)
    if fingerprint and info.fingerprint != fingerprint:
        raise BundleError(f"the study's items come from a generator with fingerprint {fingerprint[:12]}..., "
                          f"{data.generator or spec!r} has {info.fingerprint[:12]}...; pass the generator that "
                          f"made the ranked samples with --generator")
    return GeneratorSlabs(G, extraction, cache_dir=cache_dir, fingerprint=info.fingerprint)


def check_slab_fits(model: str, resolution: int) -> None:
    """ValueError unless the sigma model's U-Net can halve the slab cut at ``resolution`` once per level."""
    from nerfsculpt.reward.sigma_net import SIGMA_PRESETS, min_slab_side

    if resolution < 2:
        raise ValueError(f"--slab-resolution must be >= 2, got {resolution}")
    if model not in SIGMA_PRESETS:
        return
    shape = dataclasses.replace(REWARD_SLAB, resolution=resolution).shape
    need = min_slab_side(SIGMA_PRESETS[model])
    if min(shape) < need:
        fits = [m for m in SIGMA_PRESETS if min(shape) >= min_slab_side(SIGMA_PRESETS[m])]
        raise ValueError(f"--slab-resolution {resolution} cuts a {'x'.join(map(str, shape))} slab; --model {model} "
                         f"needs every side >= {need}: raise --slab-resolution"
                         + (f" or use --model {' or '.join(fits)}" if fits else ""))


def default_train_config(model: RewardModelConfig, **fields: Any) -> RewardTrainConfig:
    """The paper's optimisation for ``model``: its batch size (sigma 1, depth 8, PointNet 4, PointNet++ 2)."""
    return RewardTrainConfig(**{"batch": MODELS[model.model][1], **fields})


def train_reward(db: str | Path, out: str | Path, model: RewardModelConfig | None = None,
                 data: RewardDataConfig | None = None, train: RewardTrainConfig | None = None,
                 ensemble: EnsembleConfig | None = None, device: Any = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train a reward on a study's rankings: ``out/bundle`` (safetensors + JSON), ``out/metrics.json``.

    The study's answers become ranked lists, split 70/15/15 (``data``), each with a high-quality
    anchor; the inputs are computed once (cached under ``out/slab_cache``) or read from banks; the
    network (``model``) trains with ``train`` (None: the paper's, :func:`default_train_config`), or
    as an ensemble of ``ensemble.members``. Rerunning with the same ``out`` resumes. Under torchrun
    (a joined process group) each rank prepares a share of the inputs and rank 0 writes the bundle.

    Returns ``{"bundle": path, "metrics": Table-1 metrics, "training": record, "report": text}``
    (``{"bundle": None}`` on ranks > 0).

    Example::

        result = train_reward("prefs.sqlite", "runs/reward", RewardModelConfig(model="tiny", slab_resolution=32),
                              train=RewardTrainConfig(lr=2e-3, batch=4))
        print(result["report"])
    """
    import torch

    from nerfsculpt.atomic import write_atomic
    from nerfsculpt.distributed import world
    from nerfsculpt.reward.bundle import generator_record, save_bundle
    from nerfsculpt.reward.data import items_of, prepare
    from nerfsculpt.reward.ensemble_training import member_runs
    from nerfsculpt.reward.losses import weights_for
    from nerfsculpt.reward.train import evaluate, format_table, train_anchor_seed
    from nerfsculpt.reward.train import train as train_network

    model, data = model or RewardModelConfig(), data or RewardDataConfig()
    config, ensemble = train or default_train_config(model), ensemble or EnsembleConfig()
    for part in (model, config, ensemble):
        part.validate()
    check_slab_fits(model.model, model.slab_resolution)
    out = Path(out)
    rank, world_size = world()
    store, study = open_study(db, data.study)
    with store:
        extraction = extraction_for(store, study, model.slab_resolution, eg3d_grid=model.slab_grid == "eg3d",
                                    representation=MODELS[model.model][0])
        splits = splits_from_store(store, study, mode=data.pairs, by=data.split_by, seed=data.split_seed)
        source = input_source(data, extraction, store, study, device, out / "slab_cache")
    splits.check(config.anchors)
    lists = {name: splits.lists(name, config.anchors, seed=config.seed) for name in ("train", "val", "test")}
    epochs = [splits.lists("train", config.anchors, seed=train_anchor_seed(config, epoch))
              for epoch in range(config.max_epochs)]
    runs = member_runs(splits, config, ensemble) if ensemble.members > 1 else []  # seeds + k, resampled lists
    items = items_of([r for part in (*lists.values(), *epochs, *(run.lists_read() for run in runs))
                      for r in part])  # with every anchor drawn
    if rank == 0:
        log.info("study %r: %d / %d / %d train / val / test lists; %d inputs", study, len(splits.train),
                 len(splits.val), len(splits.test), len(items))
    prepare(source, items[rank::world_size], progress=progress and rank == 0)  # each rank a share
    if world_size > 1:
        torch.distributed.barrier()  # every share is in the disk cache (or the banks) now

    def build() -> torch.nn.Module:
        return build_model(model.model, model.resnet_weights, model.train_backbone).to(device)

    if ensemble.members > 1:
        network, record, results, report = _train_members(build, config, ensemble, splits, source, out, progress)
    else:
        torch.manual_seed(config.seed)
        network = build()
        summary = train_network(network, splits, source, out, config, progress=progress)
        weights = weights_for(config.objective)
        results = {"test": evaluate(network, lists["test"], source, weights, batch=config.batch),
                   "val": evaluate(network, lists["val"], source, weights, batch=config.batch)}
        best = summary["best_epoch"] + 1 if summary["best_epoch"] is not None else "-"
        record = {"summary": summary}
        report = f"{format_table(results)}\n{summary['stopped']}; best epoch {best} of {summary['epochs']}; "
    if rank > 0:
        return {"bundle": None}
    training = {"config": dataclasses.asdict(config), "study": study, "world_size": world_size,
                "db": str(Path(db).resolve()), "pairs": data.pairs, "split_by": data.split_by,
                "split_seed": data.split_seed, "model_preset": model.model, "data": data_fingerprint(splits), **record}
    generator = generator_record(source.G) if hasattr(source, "G") else None  # banks do not keep the network
    bundle = save_bundle(out / "bundle", network.cpu(), extraction, training=training, metrics=results,
                         overwrite=True, generator=generator)
    text = json.dumps({"training": training, "metrics": results}, indent=2) + "\n"
    write_atomic(out / "metrics.json", text.encode())
    return {"bundle": bundle, "metrics": results, "training": training, "report": report}


def _train_members(build, config: RewardTrainConfig, ensemble: EnsembleConfig, splits: Splits,
                   source: InputSource, out: Path, progress: bool):
    """Train the ensemble's members (``reward.ensemble_training.train_ensemble``): (the ensemble, its training record,
    metrics of the ensemble with the members' under ``members``, the Table-1 report of each and of the mean)."""
    from nerfsculpt.reward.ensemble_training import train_ensemble
    from nerfsculpt.reward.train import format_table

    result = train_ensemble(build, splits, source, out, config, ensemble, progress=progress)
    record = {"members": [{k: v for k, v in m.items() if k != "metrics"} for m in result.members]}
    metrics = {**result.metrics, "members": [m["metrics"] for m in result.members]}
    report = ""
    for k, member in enumerate(result.members):
        summary = member["summary"]
        best = summary["best_epoch"] + 1 if summary["best_epoch"] is not None else "-"
        report += (f"member {k + 1}/{ensemble.members} (seed {member['seed']}, {member['run']}): {summary['stopped']}; "
                   f"best epoch {best} of {summary['epochs']}\n{format_table(member['metrics'])}\n")
    report += (f"ensemble of {ensemble.members} members{' (bootstrap)' if ensemble.bootstrap else ''}, scored by "
               f"their mean reward\n{format_table(result.metrics)}\n")
    return result.model, record, metrics, report


def evaluate_reward(bundle: str | Path, db: str | Path, data: RewardDataConfig | None = None, split: str = "test",
                    objective: str = "paper", anchors: bool = True, device: Any = "cpu",
                    progress: bool = True) -> dict[str, Any]:
    """Table-1 accuracies of a reward bundle on one partition of a study, split as in training.

    The split settings (``data.pairs``, ``split_by``, ``split_seed``) must be those the bundle records
    from its training (BundleError otherwise: another partition leaks training lists into the test).

    "all pairs" uses the anchored lists (one anchor each, the training seed's fixed draw), "regular
    only" the (winner, loser) pairs. Returns ``reward.train.evaluate``'s result.
    """
    from nerfsculpt.reward.bundle import load_bundle
    from nerfsculpt.reward.losses import weights_for
    from nerfsculpt.reward.train import evaluate

    data = data or RewardDataConfig()
    loaded = load_bundle(bundle, device=device)
    trained = loaded.config.get("training") or {}
    differ = [f"--{k.replace('_', '-')} {trained[k]}" for k in ("pairs", "split_by", "split_seed")
              if trained.get(k) is not None and trained[k] != getattr(data, k)]
    if differ:  # another partition would put training lists into the evaluated split
        raise BundleError(f"the bundle was trained on another partition of the study; evaluate with the training "
                          f"settings ({', '.join(differ)}), or its test split overlaps its training data")
    store, study = open_study(db, data.study)
    with store:
        splits = splits_from_store(store, study, mode=data.pairs, by=data.split_by, seed=data.split_seed)
        source = input_source(data, loaded.extraction, store, study, device, None)
    seed = loaded.config.get("training", {}).get("config", {}).get("seed", 42)
    lists = splits.lists(split, anchors, seed=seed)
    if not lists:
        raise BundleError(f"the {split} split of study {study!r} is empty")
    return evaluate(loaded.model, lists, source, weights_for(objective), progress=progress)
