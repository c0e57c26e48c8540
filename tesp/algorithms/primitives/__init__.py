"""A meta-policy over pre-trained Walker2d skills (primitives.py), tested by running it."""

from tesp.algorithms.primitives.primitives import Primitives, PrimitivesConfig, summary_line
from tesp.method import Flag, Method


def primitive_checkpoints(text: str) -> dict[str, str]:
    """``--primitives walker_forward=PATH,walker_jump=PATH`` -> ``{name: path}`` (in order)."""
    pairs = [item.partition("=") for item in text.split(",") if item]
    if not pairs or any(not name or not sep or not path for name, sep, path in pairs):
        raise ValueError(f"expected NAME=CHECKPOINT[,NAME=CHECKPOINT...], got {text!r}")
    return {name: path for name, _, path in pairs}


FLAGS = (
    Flag(
        ("--primitives",),
        "primitives",
        "the skills' checkpoints, NAME=PATH[,NAME=PATH...] (--alg ppo runs)",
        type=primitive_checkpoints,
    ),
    Flag(("--switch-period",), "switch_period", "env steps between the meta-policy's choices (N)"),
    Flag(("--finetune",), "finetune", "fine-tune the primitives: none, transitions or all", type=str),
)
METHODS = (Method("primitives", Primitives, summary_line, evaluation="policy", flags=FLAGS),)

__all__ = ["METHODS", "Primitives", "PrimitivesConfig", "primitive_checkpoints", "summary_line"]
