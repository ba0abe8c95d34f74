"""From a preference database to reward training inputs: splits, anchors, extraction, slab source.

Used by ``nerfsculpt reward train`` and ``reward eval`` so both see the same partition:

- answers of one study -> ranked lists (``best_worst``, the paper, or ``full`` rankings);
- split by question (the reference's seeded 70/15/15 partition: 3,042 / 652 / 652 on the paper's
  data) or by annotator;
- anchors per partition: seeds 100000-100999 at psi 0.25 split 700/150/150 (docs/method/reference_method.md
  §3.3), as items of the study's generator;
- the extraction (slab crop, grid, latent rules) recorded in the bundle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from nerfsculpt.geometry.slab import REWARD_SLAB
from nerfsculpt.preferences.pairs import anchor_items, ranked_lists, split_lists
from nerfsculpt.preferences.splits import ANCHOR_PSI
from nerfsculpt.preferences.store import PreferenceStore
from nerfsculpt.reward.bundle import BundleError, Extraction
from nerfsculpt.reward.train import Splits


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


def data_fingerprint(splits: Splits) -> dict[str, Any]:
    """Sizes and a sha256 of each partition's lists (question, annotator, items): what a bundle was trained on."""
    out: dict[str, Any] = {}
    for name in ("train", "val", "test"):
        lists = getattr(splits, name)
        rows = [[r.question_id, r.annotator, [dataclasses.astuple(i) for i in r.items]] for r in lists]
        out[name] = {"lists": len(lists), "sha256": hashlib.sha256(json.dumps(rows).encode()).hexdigest()}
    return out


MODELS: dict[str, tuple[str, int]] = {
    "full": ("sigma_slab", 1), "small": ("sigma_slab", 1), "tiny": ("sigma_slab", 1),
    "depth1": ("depth_single", 8),
    "depth3": ("depth_triple", 8), "pointnet": ("points", 4), "pointnet2": ("points", 2),
}
"""``--model`` names: (representation, the paper's batch size). ``full``/``small``/``tiny``: the sigma reward at
the paper's size or CPU sizes; ``depth1``/``depth3``: ResNet-50 on 1 or 3 depth maps; ``pointnet``/``pointnet2``."""


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

