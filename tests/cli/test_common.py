"""Options generated from config dataclasses (nerfsculpt.cli.common)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Literal

import pytest

from nerfsculpt.cli import build_parser
from nerfsculpt.cli.common import Parser, add_config_options, config_from_args, field_docs, given_fields


def subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _commands():
    from nerfsculpt.eg3d_dataset import PoseDistribution
    from nerfsculpt.evaluate.config import EvaluateConfig
    from nerfsculpt.finetune.config import FinetuneConfig
    from nerfsculpt.geometry.bank import BankConfig
    from nerfsculpt.preferences.studies import ABStudyConfig, RankingStudyConfig
    from nerfsculpt.reward.config import EnsembleConfig, RewardDataConfig, RewardModelConfig, RewardTrainConfig
    from nerfsculpt.synthetic.config import FitConfig, SimulatedStudyConfig

    return [
        (("finetune",), ["--out", "o"], FinetuneConfig),
        (("sample",), ["--seeds", "0", "--out", "o"], BankConfig),
        (("reward", "train"), ["--db", "d", "--out", "o"], RewardModelConfig),
        (("reward", "train"), ["--db", "d", "--out", "o"], RewardDataConfig),
        (("reward", "train"), ["--db", "d", "--out", "o"], RewardTrainConfig),
        (("reward", "train"), ["--db", "d", "--out", "o"], EnsembleConfig),
        (("reward", "eval"), ["--db", "d", "--bundle", "b"], RewardDataConfig),
        (("label", "new"), ["--db", "d"], RankingStudyConfig),
        (("study", "new"), ["--db", "d", "--after", "a", "--seeds", "0"], ABStudyConfig),
        (("synthetic", "fit"), ["--out", "o"], FitConfig),
        (("synthetic", "dataset"), ["--out", "o.zip", "--n", "2"], PoseDistribution),
        (("evaluate",), ["--after", "a", "--out", "o"], EvaluateConfig),
        (("synthetic", "preferences"), ["--db", "d"], SimulatedStudyConfig),
    ]


@pytest.mark.parametrize("path, argv, cls", _commands(), ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_every_config_field_is_an_option_with_the_configs_default(path, argv, cls):
    parser = subparser(*path)
    dests = {action.dest for action in parser._actions}
    fields = [f for f in dataclasses.fields(cls) if f.init and f.name != "extra"]
    missing = [f.name for f in fields if f.name not in dests]
    assert not missing, f"{cls.__name__} fields without an option in '{' '.join(path)}': {missing}"
    args = parser.parse_args(argv)
    for f in fields:  # left out, a field is either the config's default or absent (the config's default applies)
        if hasattr(args, f.name):
            assert getattr(args, f.name) == getattr(cls(), f.name), f.name
    assert config_from_args(cls, args) == cls() or path == ("reward", "train")  # reward train: see the next test


def test_synthetic_dataset_options_come_from_its_config():
    from nerfsculpt.synthetic.config import SyntheticDatasetConfig

    parser = subparser("synthetic", "dataset")
    args = parser.parse_args(["--out", "o.zip", "--n", "3"])
    assert config_from_args(SyntheticDatasetConfig, args) == SyntheticDatasetConfig(3)
    with pytest.raises(SystemExit):  # --n has no default: required
        parser.parse_args(["--out", "o.zip"])


def test_reward_train_batch_left_out_is_the_papers_for_the_model():
    from nerfsculpt.reward.config import MODELS

    args = subparser("reward", "train").parse_args(["--db", "d", "--out", "o", "--model", "depth1"])
    assert not hasattr(args, "batch") and MODELS["depth1"][1] == 8


@dataclasses.dataclass
class Toy:
    """A config to build options from."""

    rate: float = 0.5
    """Learning rate, 50% of ``max``."""
    on: bool = True
    """A switch that is on."""
    off: bool = False
    """A switch that is off."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    seeds: tuple[int, ...] = (1, 2)
    """Some seeds."""
    betas: tuple[float, float] = (0.0, 0.99)
    """Two numbers."""
    limit: int | None = None
    """An optional limit."""
    max_epochs: int = 3
    """Epochs."""
    psis: tuple[float, ...] = (0.5, 1.0)
    """Some truncations."""
    skip: tuple[Literal["a", "b"], ...] = ()
    """Things to skip."""


def toy_parser(**kwargs) -> Parser:
    parser = Parser(prog="toy")
    add_config_options(parser, Toy, **kwargs)
    return parser


def test_types_from_annotations():
    args = toy_parser().parse_args(["--rate", "2", "--no-on", "--off", "--mode", "b", "--seeds", "3-5,9",
                                    "--betas", "0.5", "0.9", "--limit", "7"])
    assert config_from_args(Toy, args) == Toy(2.0, False, True, "b", (3, 4, 5, 9), (0.5, 0.9), 7)
    text = " ".join(toy_parser().format_help().split())
    assert "Some truncations. (default: 0.5,1)" in text and "Things to skip. (default: none)" in text
    assert config_from_args(Toy, toy_parser().parse_args([])) == Toy()
    assert toy_parser().parse_args(["--seeds", "none"]).seeds == ()
    lists = toy_parser().parse_args(["--psis", "0,0.25", "--skip", "b,a"])
    assert lists.psis == (0.0, 0.25) and lists.skip == ("b", "a")
    with pytest.raises(SystemExit):
        toy_parser().parse_args(["--skip", "c"])
    with pytest.raises(SystemExit):
        toy_parser().parse_args(["--mode", "c"])


def test_help_is_the_field_docstring_with_the_default():
    text = " ".join(toy_parser().format_help().split())
    assert "Learning rate, 50% of 'max'. (default: 0.5)" in text
    assert "--no-on Turn off: a switch that is on." in text and "--off A switch that is off." in text
    assert field_docs(Toy)["mode"] == "Which mode."


def test_unset_fields_stay_out_of_the_namespace():
    args = toy_parser(unset=("rate",)).parse_args([])
    assert not hasattr(args, "rate") and args.mode == "a"
    assert given_fields(Toy, toy_parser(unset=True).parse_args(["--mode", "b"])) == {"mode": "b"}


def test_an_old_flag_still_works_and_names_the_new_one(caplog):
    with caplog.at_level(logging.WARNING, logger="nerfsculpt"):
        args = toy_parser(aliases={"max_epochs": "--epochs"}).parse_args(["--epochs", "5"])
    assert args.max_epochs == 5 and "--max-epochs" in caplog.text
    assert "--epochs" not in toy_parser(aliases={"max_epochs": "--epochs"}).format_help()
