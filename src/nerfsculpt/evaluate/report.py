"""``nerfsculpt evaluate``: run the analyses of a fine-tune and write one report (JSON, Markdown, HTML, PNG).

Every section of the report is one analysis with its status: ``ran`` (with its protocol and
result), ``not run`` (an input it needs was not given: the reason names the flag), ``failed`` (an
input was unusable, e.g. a run directory without tick logs: the reason says why) or ``skipped``
(``EvaluateConfig.skip``). A section that could not run is never shown as passed.

Layout of ``OUT/``: ``report.json`` (everything), ``report.md`` and ``report.html`` (the same
tables; the HTML shows the figures and needs no network), ``figures/*.png``.

Example::

    report = evaluate_generators("synthetic", "runs/tune/snapshots/0000100", "runs/reward/bundle", "report/",
                                 EvaluateConfig(seeds=tuple(range(200000, 200020))), run="runs/tune")
"""

from __future__ import annotations

import datetime
import html
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from nerfsculpt.errors import NerfsculptError
from nerfsculpt.evaluate.config import ANALYSES, EvaluateConfig

log = logging.getLogger(__name__)

REPORT_FORMAT = "nerfsculpt-evaluation"
REPORT_VERSION = 1


class NotRun(Exception):  # noqa: N818  (a status, not an error: the section is reported as not run)
    """An analysis cannot run with the inputs given; the message names what is missing."""


def seeds_text(seeds: Any) -> str:
    """'200000-200099' for a contiguous run of seeds, else the count and the first few."""
    seeds = list(seeds)
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return f"{len(seeds)} seeds ({', '.join(map(str, seeds[:4]))}, ...)"


def evaluate_generators(before: str | nn.Module, after: str | nn.Module, reward: str | None, out: str | Path,
                        config: EvaluateConfig | None = None, run: str | None = None, control: str | None = None,
                        detector: str | None = None, data: str | None = None, regions: str | None = None,
                        models: dict[str, Any] | None = None, device: Any = "cpu", progress: bool = True,
                        only: str | None = None) -> dict[str, Any]:
    """Evaluate ``after`` against ``before`` and write the report to ``out``.

    ``before`` / ``after``: generator specs (built-in names, checkpoints, snapshot directories) or
    generators already loaded (described as "in-memory").

    ``reward``: a reward bundle (the reward analyses are not run without one); ``run`` / ``control``:
    fine-tuning run directories (the slope test); ``detector`` + ``data``: a TorchScript feature
    extractor and a dataset zip (FID/KID); ``regions``: a JSON file of named face boxes (region
    attribution; the built-in generator has its own); ``models``: identity models,
    ``{"lpips": (vgg16 file, lpips vgg.pth), "face_embedder": file}``. ``only``: run one analysis.
    Returns the report dict.
    """
    config = config or EvaluateConfig()
    try:
        config.validate()
    except ValueError as error:
        raise NerfsculptError(str(error)) from None
    out = Path(out)
    figures = out / "figures"
    G0, info0 = _generator(before, device, "before")
    G1, info1 = _generator(after, device, "after")
    if G0.config.to_dict() != G1.config.to_dict():
        raise NerfsculptError(f"--before {info0.spec} and --after {info1.spec} are different architectures; compare a "
                              f"fine-tuned generator with the one it started from (RUN/pretrained)")
    if info0.fingerprint == info1.fingerprint:
        log.warning("evaluate: --before and --after have identical weights; every change will be 0")
    figures.mkdir(parents=True, exist_ok=True)
    bundle = None
    if reward is not None:
        from nerfsculpt.reward.bundle import load_bundle

        bundle = load_bundle(reward, device=device)
        bundle.check_generator(G0)
    context = _Context(config, G0, G1, bundle, run, control, detector, data, figures, progress)
    sections: dict[str, Any] = {name: {"status": "pending"} for name in ANALYSES}
    report = {"format": REPORT_FORMAT, "version": REPORT_VERSION,
              "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "before": info0.to_dict() | {"config": None}, "after": info1.to_dict() | {"config": None},
              "reward": _bundle_record(bundle), "config": _config_record(config), "sections": sections}
    context.regions = regions
    context.models = {k: v for k, v in (models or {}).items() if v is not None}
    for name in ANALYSES:
        if (only is not None and name != only) or name in config.skip:
            sections[name] = {"status": "skipped"}
            continue
        try:
            log.info("evaluate: %s", name)
            sections[name] = {"status": "ran", **ANALYSIS_FUNCTIONS[name](context)}
        except NotRun as reason:
            sections[name] = {"status": "not run", "reason": str(reason)}
        except NerfsculptError as error:  # bad input for this analysis: the others still run
            log.warning("evaluate: %s failed: %s", name, error)
            sections[name] = {"status": "failed", "reason": str(error)}
        _write_report(report, out)  # after every section: a long evaluation keeps what it has measured
    _write_report(report, out)
    return report


def _generator(spec: str | nn.Module, device: Any, name: str) -> tuple[nn.Module, Any]:
    from nerfsculpt.generator.builtin import GeneratorInfo, generator_fingerprint, resolve_generator

    if isinstance(spec, nn.Module):
        info = GeneratorInfo(spec=f"in-memory ({name})", kind="in-memory", network="G_ema",
                             fingerprint=generator_fingerprint(spec), config=spec.config.to_dict())
        return spec.eval(), info
    return resolve_generator(spec, device)


class _Context:
    """What the analyses share: the inputs, a reward scorer that remembers, the oracle's scores."""

    def __init__(self, config, G0, G1, bundle, run, control, detector, data, figures, progress):
        self.config, self.G0, self.G1, self.bundle = config, G0, G1, bundle
        self.run, self.control, self.detector, self.data = run, control, detector, data
        self.figures, self.progress = figures, progress
        self.regions = None
        self.models: dict[str, Any] = {}
        self._scorer = None
        self._oracle_scores = None

    def scorer(self):
        if self.bundle is None:
            raise NotRun("needs a reward bundle: pass --reward BUNDLE")
        if self._scorer is None:
            from nerfsculpt.evaluate.rewards import Scorer

            self._scorer = Scorer(self.bundle, progress=self.progress)
        return self._scorer

    def protocol(self, **extra: Any) -> dict[str, Any]:
        c = self.config
        record = {"seeds": seeds_text(c.seeds), "n": len(c.seeds), "psi": c.psi, "camera": "canonical",
                  "noise_mode": "const", "network": "G_ema"}
        if self.bundle is not None:  # the reward's samples follow the bundle's rules
            ext = self.bundle.extraction
            record.update(noise_mode=ext.noise_mode, truncation_cutoff=ext.truncation_cutoff,
                          slab_resolution=ext.slab_spec.resolution, slab_grid="eg3d" if ext.eg3d_grid else "exact")
        return {**record, **extra}

    def oracle_scores(self):
        from nerfsculpt.finetune.run import oracle_applies

        if not (oracle_applies("auto", self.G0) and oracle_applies("auto", self.G1)):
            raise NotRun("the oracle judges the built-in synthetic generator's heads only")
        if self._oracle_scores is None:
            from nerfsculpt.synthetic.oracle import GeometryOracle, OracleConfig
            from nerfsculpt.synthetic.preferences import oracle_scores

            oracle = GeometryOracle(OracleConfig(resolution=self.config.oracle_resolution))
            scores = [oracle_scores(G, self.config.seeds, oracle, psi=self.config.psi, cutoff=None,
                                    progress=self.progress) for G in (self.G0, self.G1)]
            self._oracle_scores = (oracle, *scores)
        return self._oracle_scores


def _rewards(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.figures import renders_png, reward_deltas_png
    from nerfsculpt.evaluate.rewards import reward_deltas

    result = reward_deltas(ctx.scorer(), ctx.G0, ctx.G1, ctx.config.seeds, ctx.config.psi)
    figures = [reward_deltas_png(result, ctx.figures / "reward_deltas.png")]
    section: dict[str, Any] = {"protocol": ctx.protocol(), "result": result}
    if ctx.config.renders > 0:
        figures.append(_renders(ctx, renders_png))
        section["meshes"] = _meshes(ctx)
    return {**section, "figures": [str(f.name) for f in figures]}


def _meshes(ctx: _Context) -> list[str]:
    """GLB meshes (sigma = 10, EG3D's border) of the rendered seeds, both generators, in OUT/meshes/."""
    from nerfsculpt.geometry.mesh import extract_mesh, save_mesh
    from nerfsculpt.geometry.sigma import sigma_grid
    from nerfsculpt.latents import ws_from_seeds

    written = []
    (ctx.figures.parent / "meshes").mkdir(exist_ok=True)
    for seed in ctx.config.seeds[: ctx.config.renders]:
        for name, G in (("original", ctx.G0), ("tuned", ctx.G1)):
            cube = sigma_grid(G, ws_from_seeds(G, [seed], ctx.config.psi, None), resolution=128)[0]  # (R, R, R)
            try:
                mesh = extract_mesh(cube, level=10.0, cube_length=float(G.rendering_kwargs["box_warp"]), border="eg3d")
            except ValueError:  # no surface at the level
                continue
            path = save_mesh(mesh, ctx.figures.parent / "meshes" / f"seed-{seed}-{name}.glb",
                             {"seed": int(seed), "generator": name, "psi": ctx.config.psi, "level": 10.0})
            written.append(f"meshes/{path.name}")
    return written


def _renders(ctx: _Context, renders_png: Callable) -> Path:
    """Clay renders (front, three-quarter, profile) of the first seeds, before and after."""
    from nerfsculpt.geometry.shading import render_geometry
    from nerfsculpt.latents import ws_from_seeds

    seeds = list(ctx.config.seeds[: ctx.config.renders])
    images = [render_geometry(G, ws_from_seeds(G, seeds, ctx.config.psi, None), resolution=128, grid_resolution=128)
              for G in (ctx.G0, ctx.G1)]
    return renders_png(images[0], images[1], seeds, ctx.figures / "renders.png")


def _sweep(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.figures import sweep_png
    from nerfsculpt.evaluate.rewards import truncation_sweep

    scorer = ctx.scorer()
    result = {name: truncation_sweep(scorer, G, ctx.config.seeds, ctx.config.sweep_psis)
              for name, G in (("original", ctx.G0), ("tuned", ctx.G1))}
    figure = sweep_png(result, ctx.figures / "truncation_sweep.png")
    return {"protocol": ctx.protocol(psi=list(ctx.config.sweep_psis), std="population (ddof 0)"), "result": result,
            "figures": [figure.name]}


def _consistency(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.rewards import rank_consistency_across_psi

    scorer = ctx.scorer()
    result = {name: rank_consistency_across_psi(scorer, G, ctx.config.seeds, ctx.config.psi, ctx.config.consistency_psi)
              for name, G in (("original", ctx.G0), ("tuned", ctx.G1))}
    figures = [_tails(ctx, scorer).name] if ctx.config.renders > 0 else []
    return {"protocol": ctx.protocol(psi=[ctx.config.psi, ctx.config.consistency_psi]), "result": result,
            "figures": figures}


def _tails(ctx: _Context, scorer: Any) -> Path:
    """Fig. 20: clay renders (front view) of the tuned generator's best and worst seeds by reward at psi."""
    import numpy as np

    from nerfsculpt.atomic import png_bytes, write_atomic
    from nerfsculpt.camera import annotation_views
    from nerfsculpt.geometry.shading import render_geometry
    from nerfsculpt.latents import ws_from_seeds

    scored = scorer(ctx.G1, ctx.config.seeds, ctx.config.psi)
    order = np.argsort(-scored.rewards, kind="stable")  # best first
    k = max(1, min(ctx.config.renders, len(order) // 2))
    rows = []
    for picks in (order[:k], order[::-1][:k]):
        seeds = [scored.seeds[i] for i in picks]
        views = annotation_views()
        front = render_geometry(ctx.G1, ws_from_seeds(ctx.G1, seeds, ctx.config.psi, None),
                                views=views.render[:1], resolution=128, grid_resolution=128)  # (k, 1, R, R, 3)
        rows.append(np.concatenate(list(front[:, 0]), axis=1))  # (R, k * R, 3)
    return write_atomic(ctx.figures / "reward_tails.png", png_bytes(np.concatenate(rows, axis=0)))


def _slope(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.figures import slope_png
    from nerfsculpt.finetune.monitor import logged_ticks as ticks

    if ctx.run is None:
        raise NotRun("needs the fine-tuning run directory: pass --run RUN (and --control RUN for its control)")
    from nerfsculpt.evaluate.trajectory import RunError, run_slope

    result: dict[str, Any] = {}
    for name, run in (("tuned", ctx.run), ("control", ctx.control)):
        if run is None:
            continue
        if not Path(run).is_dir():
            raise RunError(f"{run} is not a directory; pass the fine-tuning run directory (--run / --control)")
        result[name] = {"reward": run_slope(run, "reward")} if ticks(run, "rewards") else {}
        if ticks(run, "oracle"):
            result[name]["oracle"] = run_slope(run, "oracle")
        if not result[name]:
            raise RunError(f"{run} logged no trajectory seeds (no rewards/ or oracle/ tick files)")
    pairs = {f"{name} ({measure})": s for name, measures in result.items() for measure, s in measures.items()}
    figure = slope_png(pairs, ctx.figures / "slope.png")
    figures = [figure.name]
    gold = Path(ctx.run) / "gold_curve.png"
    if gold.is_file():  # the run's proxy-against-truth trajectory (synthetic benchmark)
        import shutil

        shutil.copyfile(gold, ctx.figures / "gold_curve.png")
        figures.append("gold_curve.png")
    return {"protocol": {"seeds": "the run's trajectory seeds", "psi": 1.0, "network": "G_ema",
                         "test": "OLS final = a + b initial, t test of b = 1 (paper §4.2)"},
            "result": result, "figures": figures}


def _truncation(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.truncation import truncation_baseline

    c = ctx.config
    result = truncation_baseline(ctx.G0, ctx.G1, c.seeds, c.psi, c.depth_resolution, c.sigma_resolution,
                                 progress=ctx.progress)
    protocol = result.pop("protocol")
    return {"protocol": ctx.protocol(**protocol), "result": result}


def _embedding(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.embedding import REGIME_PSIS, embedding_structure
    from nerfsculpt.evaluate.figures import embedding_png

    result = embedding_structure(ctx.scorer(), ctx.G0, ctx.G1, ctx.config.seeds, ctx.config.psi)
    figure = embedding_png(result, ctx.figures / "embedding.png")
    return {"protocol": ctx.protocol(regimes=list(REGIME_PSIS), features="reward embedding f", distance="Euclidean"),
            "result": result, "figures": [figure.name]}


def _attribution(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.attribution import attribute, read_regions, synthetic_regions
    from nerfsculpt.evaluate.figures import attribution_png
    from nerfsculpt.finetune.run import oracle_applies

    scorer = ctx.scorer()  # NotRun without a reward
    if ctx.regions is not None:
        regions, source = read_regions(ctx.regions), str(ctx.regions)
    elif oracle_applies("auto", ctx.G0):
        regions, source = synthetic_regions(ctx.config.seeds, ctx.G0.z_dim), "the built-in heads' landmarks"
    else:
        raise NotRun("needs named face regions: pass --regions FILE (JSON boxes in world units, docs/evaluate.md)")
    c = ctx.config
    result = attribute(scorer.bundle, ctx.G0, ctx.G1, c.seeds, c.psi, regions, c.permutations, c.ig_steps,
                       progress=ctx.progress)
    figure = attribution_png(result["summary"], ctx.figures / "attribution.png")
    return {"protocol": ctx.protocol(regions=source, permutations=c.permutations, permutation_seed=123,
                                     ig_steps=c.ig_steps, ig="right Riemann sum, gradient of the raw slab"),
            "result": result, "figures": [figure.name]}


def _identity(ctx: _Context) -> dict[str, Any]:
    lpips_files, embedder_file = ctx.models.get("lpips"), ctx.models.get("face_embedder")
    if lpips_files is None and embedder_file is None:
        raise NotRun("needs LPIPS' weights (--lpips-vgg VGG16.pth --lpips-weights vgg.pth) and/or a face embedder "
                     "(--face-embedder FILE.pt|.onnx)")
    import numpy as np

    from nerfsculpt.camera import canonical_camera
    from nerfsculpt.evaluate.distribution import file_sha256, load_feature_extractor
    from nerfsculpt.evaluate.identity import LPIPS, identity_drift
    from nerfsculpt.geometry.views import render_depth
    from nerfsculpt.latents import ws_from_seeds

    c = ctx.config
    lpips = LPIPS.load(*lpips_files) if lpips_files is not None else None
    embedder = load_feature_extractor(embedder_file, return_features=False) if embedder_file is not None else None
    from nerfsculpt.geometry.sigma import sigma_grid

    pairs = [(G, ws_from_seeds(G, c.seeds, c.psi, None)) for G in (ctx.G0, ctx.G1)]
    depth = [render_depth(G, w, canonical_camera(), c.depth_resolution) for G, w in pairs]  # (S, 1, 1, R, R) each
    sigma = [sigma_grid(G, w, resolution=c.sigma_resolution) for G, w in pairs]  # (S, R, R, R) each
    change = {"depth": (depth[1] - depth[0]).abs().flatten(1).mean(1).double().cpu().numpy(),  # (S,)
              "sigma": (sigma[1] - sigma[0]).abs().flatten(1).mean(1).double().cpu().numpy()}
    result = identity_drift(ctx.G0, ctx.G1, c.seeds, c.psi, lpips, embedder, ctx.data, geometry_change=change)
    hashes = {"lpips": [file_sha256(f) for f in lpips_files] if lpips_files else None,
              "face_embedder": file_sha256(embedder_file) if embedder_file else None}
    return {"protocol": ctx.protocol(render_size=result.pop("size"), views=result.pop("views"),
                                     cameras=result.pop("camera_source"), conditioning="canonical",
                                     geometry_change="mean |depth change| (canonical camera), mean |sigma change|",
                                     model_sha256=hashes),
            "result": {**result, "geometry_change_mean": {k: float(np.mean(v)) for k, v in change.items()}}}


def _oracle(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.synthetic import oracle_comparison

    oracle, before, after = ctx.oracle_scores()
    return {"protocol": ctx.protocol(oracle_resolution=ctx.config.oracle_resolution),
            "result": oracle_comparison(before, after, oracle)}


def _study(ctx: _Context) -> dict[str, Any]:
    from nerfsculpt.evaluate.synthetic import simulated_user_study

    oracle, before, after = ctx.oracle_scores()
    c = ctx.config
    result = simulated_user_study(before, after, oracle, c.respondents, c.temperature, c.cant_decide)
    return {"protocol": ctx.protocol(**result.pop("protocol")), "result": result}


def _image_shift(ctx: _Context) -> dict[str, Any]:
    """How far the tuned generator's images moved from the original's, in pixel space, against the noise floor."""
    import torch

    from nerfsculpt.eg3d_dataset import read_eg3d_dataset, sample_ffhq_like_poses
    from nerfsculpt.evaluate.distribution import (
        FeatureStatistics,
        frechet_distance,
        generator_features,
        kernel_inception_distance,
        pixel_features,
    )

    n = ctx.config.shift_samples
    labels = (read_eg3d_dataset(ctx.data).labels if ctx.data is not None
              else sample_ffhq_like_poses(1000, torch.Generator().manual_seed(0)).numpy())
    # the reference set: the original on seed 0's latents; both compared sets on seed 1's (independent of it)
    original = generator_features(ctx.G0, pixel_features, n, labels, seed=0, progress=ctx.progress)
    again = generator_features(ctx.G0, pixel_features, n, labels, seed=1, progress=ctx.progress)
    tuned = generator_features(ctx.G1, pixel_features, n, labels, seed=1, progress=ctx.progress)
    stats = {name: FeatureStatistics.of(f) for name, f in (("original", original), ("again", again),
                                                             ("tuned", tuned))}
    result = {"fid": frechet_distance(stats["tuned"], stats["original"]),
              "kid": kernel_inception_distance(tuned, original),
              "floor_fid": frechet_distance(stats["again"], stats["original"]),
              "floor_kid": kernel_inception_distance(again, original)}
    return {"protocol": {"samples": n, "features": "pixels, 3 x 32 x 32 (area-averaged, [0, 1])", "psi": 1.0,
                         "noise_mode": "random", "cameras": "dataset labels" if ctx.data else "FFHQ-like prior",
                         "reference": "the original generator, latents and cameras of seed 0",
                         "floor": "the original generator on seed 1's latents; the tuned one uses the same"},
            "result": result}


def _fid(ctx: _Context) -> dict[str, Any]:
    spaces = [(name, path, inception) for name, path, inception in
              (("inception", ctx.detector, True), ("features", ctx.models.get("features"), False)) if path is not None]
    if not spaces or ctx.data is None:
        raise NotRun("needs real images and a feature extractor: pass --data DATASET.zip and --detector INCEPTION.pt "
                     "(StyleGAN's TorchScript Inception) and/or --features FILE (any TorchScript/ONNX extractor)")
    from nerfsculpt.eg3d_dataset import read_eg3d_dataset
    from nerfsculpt.evaluate.distribution import (
        FeatureStatistics,
        cached_dataset_statistics,
        file_sha256,
        frechet_distance,
        generator_features,
        kernel_inception_distance,
        load_feature_extractor,
    )

    device = ctx.G0.dataset_label_std.device
    labels = read_eg3d_dataset(ctx.data).labels
    n = ctx.config.fid_samples
    result: dict[str, Any] = {}
    protocol: dict[str, Any] = {"generated": n, "psi": 1.0, "noise_mode": "random", "data": str(ctx.data),
                                "cameras": "random dataset labels (conditioning = rendering)"}
    for space, path, inception in spaces:
        extract = load_feature_extractor(path, device, return_features=inception)
        sha256 = file_sha256(path)
        call = "return_features" if inception else "plain"
        real, pool = cached_dataset_statistics(ctx.data, extract, sha256, call=call, progress=ctx.progress)
        scores = {}
        for name, G in (("original", ctx.G0), ("tuned", ctx.G1)):
            fake = generator_features(G, extract, n, labels, progress=ctx.progress)
            scores[name] = {"fid": frechet_distance(FeatureStatistics.of(fake), real),
                            "kid": kernel_inception_distance(fake, pool)}
        scores["cost"] = {k: scores["tuned"][k] - scores["original"][k] for k in ("fid", "kid")}
        result[space] = scores
        protocol[f"{space}_sha256"] = sha256
        protocol["real"], protocol["kid_real_pool"] = real.n, len(pool)
    return {"protocol": protocol, "result": result}


ANALYSIS_FUNCTIONS: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "rewards": _rewards, "sweep": _sweep, "consistency": _consistency, "slope": _slope, "truncation": _truncation,
    "embedding": _embedding, "attribution": _attribution, "identity": _identity, "oracle": _oracle, "study": _study,
    "image_shift": _image_shift, "fid": _fid,
}
assert tuple(ANALYSIS_FUNCTIONS) == ANALYSES, "one function per analysis, in the report's order"


def _bundle_record(bundle: Any) -> dict[str, Any] | None:
    if bundle is None:
        return None
    from nerfsculpt.evaluate.distribution import file_sha256

    weights = bundle.path / "model.safetensors" if bundle.path is not None else None
    return {"path": str(bundle.path), "members": bundle.members,
            "model_sha256": file_sha256(weights) if weights is not None and weights.is_file() else None}


def _config_record(config: EvaluateConfig) -> dict[str, Any]:
    import dataclasses

    record = dataclasses.asdict(config)
    record["seeds"] = seeds_text(config.seeds)
    return record


# ------------------------------------------------------------------------------------------------
# Writing


TITLES = {
    "rewards": "Same-latent reward change (Fig. 7)", "sweep": "Reward against truncation (Table 5)",
    "consistency": "Rank consistency across truncation (Table 9)", "slope": "Final against initial (§4.2, Figs. 8-9)",
    "truncation": "Truncation baseline (Table 4)", "embedding": "Reward embedding structure (Fig. 11)",
    "attribution": "Where the reward change comes from (region attribution, Figs. 13-14)",
    "identity": "Identity drift: LPIPS and face-embedding similarity",
    "image_shift": "Image shift in pixel space (no model file needed)",
    "oracle": "Ground truth: the oracle, per defect (built-in benchmark)",
    "study": "Simulated A/B user study (Table 3)", "fid": "Image distribution: FID and KID",
}


CAPTIONS = {
    "renders.png": "Clay renders of the same latents (front, three-quarter, profile): original left, tuned right.",
    "reward_tails.png": "The tuned generator's best (top row) and worst (bottom row) samples by reward.",
    "gold_curve.png": "The run's gold curve: the learnt reward (proxy) and the oracle's quality (truth) per tick.",
    "slope.png": "Final against initial per trajectory seed, with the OLS line (b) and no change (b = 1).",
}
"""Captions of the figures whose layout is not self-explanatory."""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.4g}, {value[1]:.4g}]"
    return str(value)


def _section_lines(name: str, section: dict[str, Any]) -> list[str]:
    lines = [f"## {TITLES[name]}", ""]
    if section["status"] != "ran":
        reason = f": {section['reason']}" if "reason" in section else ""
        return [*lines, f"**{section['status']}**{reason}", ""]
    lines.append("Protocol: " + "; ".join(f"{k} {_fmt(v)}" for k, v in section["protocol"].items()))
    lines.append("")
    result = section["result"]
    if name == "rewards":
        d = result["delta"]
        lines += ["| n | mean Δr [95 % CI] | median | Δr > 0 | Δr < 0 | embedding distance (mean) |",
                  "|---|---|---|---|---|---|",
                  f"| {d['n']} | {d['mean']:+.4g} {_fmt(d['mean_ci95'])} | {d['median']:+.4g} | "
                  f"{d['fraction_positive']:.0%} | {d['fraction_negative']:.0%} | "
                  f"{result['embedding_distance']['mean']:.4g} |"]
    elif name == "sweep":
        psis = [r["psi"] for r in next(iter(result.values()))]
        lines += ["| generator | " + " | ".join(f"ψ {p:g}" for p in psis) + " |", "|---|" + "---|" * len(psis)]
        lines += [f"| {g} | " + " | ".join(f"{r['mean']:.4g} ± {r['std']:.3g}" for r in rows) + " |"
                  for g, rows in result.items()]
    elif name == "consistency":
        lines += ["| generator | Spearman | Pearson | top overlap | bottom overlap | std ratio |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {g} | {r['spearman']:.3f} | {r['pearson']:.3f} | {r['top_overlap']:.0%} | "
                  f"{r['bottom_overlap']:.0%} | {r['std_ratio']:.3f} |" for g, r in result.items()]
    elif name == "slope":
        lines += ["| run | measure | seeds | b [95 % CI] | p (b = 1) | mean gain |", "|---|---|---|---|---|---|"]
        lines += [f"| {run} | {m} | {s['seeds']} | {s['b']:.3f} {_fmt(s['b_ci95'])} | {s['p_b_equals_1']:.2g} | "
                  f"{s['mean_gain']:+.4g} |" for run, measures in result.items() for m, s in measures.items()]
    elif name == "truncation":
        lines += ["| representation | closer to original | Wilcoxon p (one-sided) | α [95 % CI] | residual | cosine |",
                  "|---|---|---|---|---|---|"]
        for rep, r in result.items():
            alpha = r["alpha"]
            lines.append(f"| {rep} | {r['closer_to_original']:.0%} | {r['wilcoxon']['p_value']:.2g} | "
                         f"{_fmt(alpha['mean'])} {_fmt(alpha['ci95'])} | {_fmt(r['residual_fraction']['mean'])} | "
                         f"{_fmt(r['cosine']['mean'])} |")
    elif name == "embedding":
        lines += ["| experiment | labels | silhouette | projection |", "|---|---|---|---|"]
        lines += [f"| {e} | {', '.join(dict.fromkeys(r['labels']))} | {r['silhouette']:.3f} | {r['projection']} |"
                  for e, r in result.items()]
    elif name == "attribution":
        summary = result["summary"]
        lines += ["| region | voxels | Shapley (mean) | IG (mean) | Shapley > 0 | top region in |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {result['voxels'][n]} | {r['shapley_mean']:+.4g} | {r['ig_mean']:+.4g} | "
                  f"{r['positive']:.0%} | {r['top']} seeds |" for n, r in summary["regions"].items()]
        lines += ["", f"Completeness: Shapley values add up to the change within "
                      f"{summary['max_shapley_completeness_error']:.2g}; integrated gradients within "
                      f"{summary['max_ig_completeness_error']:.2g}; Shapley-IG correlation "
                      f"{_fmt(summary['shapley_ig_correlation'])}."]
    elif name == "identity":
        lines += ["| measure | canonical view | other views |", "|---|---|---|"]
        if "lpips" in result:
            lp = result["lpips"]
            lines.append(f"| LPIPS (original vs tuned) | {lp['canonical']['mean']:.4g} "
                         f"{_fmt(lp['canonical']['ci95'])} | {lp['views']['mean']:.4g} {_fmt(lp['views']['ci95'])} |")
        if "face_identity" in result:
            fi = result["face_identity"]
            lines.append(f"| face cosine (original vs tuned) | {fi['across_canonical']['mean']:.4g} | mean "
                         f"{fi['across_views']['mean']:.4g}, min {fi['across_views']['min']:.4g} |")
            k = fi["consistency"]
            lines += ["", f"Within-model view consistency: original {k['original']:.4g}, tuned {k['tuned']:.4g} "
                          f"(paired Wilcoxon p {k['wilcoxon_p']:.2g})."]
    elif name == "oracle":
        lines += ["| measure | original | tuned | change [95 % CI] | better | worse |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['measure']}{'' if r['higher_is_better'] else ' (lower is better)'} | {r['before']:.4g} | "
                  f"{r['after']:.4g} | {r['change']:+.4g} {_fmt(r['change_ci95'])} | {r['better']:.0%} | "
                  f"{r['worse']:.0%} |" for r in result["rows"]]
    elif name == "study":
        p, c = result["proportions"], result["counts"]
        lines += ["| tuned | original | no preference | Cohen's h | preference excl. ties [95 % CI] | p |",
                  "|---|---|---|---|---|---|"]
        excl = result.get("preference_excluding_ties") or {}
        lines.append(f"| {c['tuned']} ({p['tuned']:.1%}) | {c['original']} ({p['original']:.1%}) | {c['none']} "
                     f"({p['none']:.1%}) | {result['cohens_h']:.3f} | {_fmt(excl.get('rate'))} "
                     f"{_fmt(excl.get('ci'))} | {_fmt(excl.get('p_value'))} |")
    elif name == "image_shift":
        lines += ["| features | FID tuned vs original | noise floor (original vs itself) | KID | KID floor |",
                  "|---|---|---|---|---|",
                  f"| pixels 32 x 32 | {result['fid']:.4g} | {result['floor_fid']:.4g} | {result['kid']:.3g} | "
                  f"{result['floor_kid']:.3g} |"]
    elif name == "fid":
        lines += ["| features | generator | FID | KID |", "|---|---|---|---|"]
        for space, scores in result.items():
            lines += [f"| {space} | {g} | {r['fid']:.4g} | {r['kid']:.4g} |" for g, r in scores.items() if g != "cost"]
            lines += [f"| {space} | tuned - original | {scores['cost']['fid']:+.4g} | {scores['cost']['kid']:+.4g} |"]
    lines.append("")
    for f in section.get("figures", []):
        lines += [f"![{name}](figures/{f})", *([f"*{CAPTIONS[f]}*"] if f in CAPTIONS else [])]
    lines.append("")
    if section.get("meshes"):
        links = ", ".join(f"[{Path(m).stem}]({m})" for m in section["meshes"])
        lines += [f"Meshes (GLB, open in any 3-D viewer): {links}", ""]
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    """The report's tables as Markdown (figures linked from ``figures/``)."""
    b, a = report["before"], report["after"]
    lines = ["# Evaluation of a fine-tune", "",
             f"Original: `{b['spec']}` (fingerprint {b['fingerprint'][:12]}); tuned: `{a['spec']}` "
             f"(fingerprint {a['fingerprint'][:12]}).",
             f"Reward: `{report['reward']['path']}` (model sha256 {str(report['reward']['model_sha256'])[:12]})."
             if report["reward"] else "Reward: none given.", ""]
    lines += [*_headlines(report["sections"]), ""]
    ran = [n for n, s in report["sections"].items() if s["status"] == "ran"]
    missing = [n for n, s in report["sections"].items() if s["status"] == "not run"]
    failed = [n for n, s in report["sections"].items() if s["status"] == "failed"]
    lines += [f"Ran: {', '.join(ran) or 'nothing'}. Not run: {', '.join(missing) or 'nothing'}."
              + (f" Failed: {', '.join(failed)}." if failed else ""), ""]
    for name, section in report["sections"].items():
        lines += _section_lines(name, section)
    return "\n".join(lines)


def _headlines(sections: dict[str, Any]) -> list[str]:
    """One line per key finding, with its interval: what changed and how sure we are."""
    lines = ["## In short", ""]

    def ran(name: str) -> dict[str, Any] | None:
        return sections[name]["result"] if sections.get(name, {}).get("status") == "ran" else None

    if (r := ran("rewards")) is not None:
        d = r["delta"]
        lines.append(f"- The reward of the same latents changed by {d['mean']:+.3g} (95 % CI {_fmt(d['mean_ci95'])}); "
                     f"it rose on {d['fraction_positive']:.0%} of {d['n']} seeds.")
    if (r := ran("oracle")) is not None:
        q = next(row for row in r["rows"] if row["measure"] == "quality")
        lines.append(f"- Ground truth (oracle quality, higher is better): {q['change']:+.3g} (95 % CI "
                     f"{_fmt(q['change_ci95'])}); better on {q['better']:.0%} of seeds, worse on {q['worse']:.0%}.")
    if (r := ran("study")) is not None:
        lines.append(f"- Simulated A/B study: tuned preferred in {r['proportions']['tuned']:.0%} of answers, the "
                     f"original in {r['proportions']['original']:.0%}; Cohen's h {r['cohens_h']:.2f}.")
    if (r := ran("slope")) is not None and "reward" in r.get("tuned", {}):
        s = r["tuned"]["reward"]
        lines.append(f"- Final against initial reward: b = {s['b']:.2f} {_fmt(s['b_ci95'])} (p of b = 1: "
                     f"{s['p_b_equals_1']:.2g}); b < 1 means the worse samples gained more.")
    if (r := ran("truncation")) is not None:
        sigma = r["sigma"]
        lines.append(f"- Toward the average face? Each sample's sigma change has cosine "
                     f"{_fmt(sigma['cosine']['mean'])} with the direction to the average face, and a share "
                     f"{_fmt(sigma['residual_fraction']['mean'])} of it is orthogonal to that direction (a pure slide: "
                     f"cosine 1, residual 0); {sigma['closer_to_original']:.0%} of the samples stay closer to their "
                     f"original.")
    if (r := ran("image_shift")) is not None:
        lines.append(f"- Image shift in pixel space: FID {r['fid']:.3g} between the generators' images, against a "
                     f"noise floor of {r['floor_fid']:.3g} (the original against itself).")
    if (r := ran("fid")) is not None:
        costs = ", ".join(f"{space} FID {v['cost']['fid']:+.3g}" for space, v in r.items())
        lines.append(f"- Image-distribution cost (tuned - original): {costs}.")
    return lines if len(lines) > 2 else []


def report_html(markdown: str) -> str:
    """A self-contained page of the Markdown report: headings, tables, paragraphs and images (no network)."""
    body: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if table:
            rows = [[html.escape(c.strip()) for c in r.strip("|").split("|")]
                    for r in table if not r.startswith("|---")]
            head, rest = rows[0], rows[1:]
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("*") and line.endswith("*") and not line.startswith("**"):
            body.append(f"<p><em>{html.escape(line.strip('*'))}</em></p>")
        elif line.startswith("- "):
            body.append(f"<p>&bull; {html.escape(line[2:])}</p>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<img alt="{html.escape(alt)}" src="{html.escape(src.rstrip(")"))}">')
        elif line.strip():
            text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', html.escape(line).replace("**", ""))
            text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
            body.append(f"<p>{text}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
             "th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>nerfsculpt evaluation</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _write_report(report: dict[str, Any], out: Path) -> None:
    from nerfsculpt.atomic import write_atomic

    markdown = report_markdown(report)
    write_atomic(out / "report.json", (json.dumps(report, indent=2, default=_json_default) + "\n").encode())
    write_atomic(out / "report.md", (markdown + "\n").encode())
    write_atomic(out / "report.html", report_html(markdown).encode())


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def check_report(path: str | Path) -> dict[str, Any]:
    """Read a report.json and check its format; NerfsculptError if it is not one."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != REPORT_FORMAT:
        raise NerfsculptError(f"{path} is not a nerfsculpt evaluation report")
    return data
