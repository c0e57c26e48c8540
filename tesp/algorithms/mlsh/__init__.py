"""MLSH (Frans et al. 2017): a fresh master per task over shared sub-policies (mlsh.py)."""

from tesp.algorithms.mlsh.mlsh import MLSHAlgorithm, MLSHConfig, summary_line
from tesp.algorithms.mlsh.panels import mlsh_panel
from tesp.method import Flag, Method

FLAGS = (
    Flag(("-W", "--warmup-iters"), "warmup_iters", "master-only iterations per task (W)"),
    Flag(("-U", "--joint-iters"), "joint_iters", "master and sub-policy iterations per task (U)"),
    Flag(("--num-subs",), "num_subs", "number of shared sub-policies"),
    Flag(("--macro-duration",), "macro_duration", "steps between the master's choices"),
)
METHODS = (Method("mlsh", MLSHAlgorithm, summary_line, flags=FLAGS, panels={"MLSH": mlsh_panel}),)

__all__ = ["METHODS", "MLSHAlgorithm", "MLSHConfig"]
