"""Print the effective configuration as TOML: the Kaggle defaults, then --config, then --set.

The output is itself a valid --config file, so `arc25 config > my.toml` is a
starting point for a run of your own.
"""

from __future__ import annotations

import argparse

from arc25.config import add_config_arguments, config_from_args, config_to_toml

HELP = "print the effective configuration as TOML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    print(config_to_toml(config_from_args(args)), end="")
    return 0
