"""The meta-policy over Walker2d skills against its baselines, on the obstacle course.

The seed "Meta policy for selecting primitive skills in a complex environment" claims that a
meta-policy picking pre-trained skills (walk, jump, crawl) every N steps, with the skills
fine-tuned on transition states, gets further on an obstacle course than the skills alone and
than learning from scratch (its anchor, Lee et al. 2019, reports ~1.8-2.0 obstacles passed for
its transition policies and ~0.5 for PPO from scratch). This script runs, in one folder and
resumably (a finished run is skipped, an interrupted one resumed):

1. the three skills: the shipped ones (``skills/walker_*``, ``--skills shipped``, the default), or
   trained here with ``--alg ppo`` (``--skills train``: ``configs/walker_*/ppo.yaml``,
   ``--skill-iters`` iterations of 8000 steps, once, seed 0), shared by every seed below;
2. per seed: the meta-policy with the skills fine-tuned on transitions and frozen
   (``--alg primitives --finetune transitions|none``), and PPO from scratch on the course, each for
   ``--iters`` iterations of 8000 RLlib env steps (the meta-policy's env steps count its decisions
   too, 1 in N + 1, so it sees slightly fewer walker steps than PPO: conservative for it);
3. ``main_test.py`` on every final checkpoint (``--episodes`` episodes, seeded: re-running it
   repeats the numbers), and each skill alone on the course (``main_test.py SKILL --env
   walker_obstacle_course``);

then prints the obstacles passed per episode (and the success rate) of each, mean over seeds with
a 95% bootstrap CI over seeds (the skills alone: over episodes, one run). ``--oracle-only`` prints
only the row of :class:`Oracle` (the skills switched by the terrain; no training; ``--oracle-reach``
and ``--oracle-slip`` change how early it switches and how reliably, see the class). ``--course
reduced`` uses one curb and one ceiling (``env_config.kinds=[curb, ceiling]``) instead of the full
course, ``--course ceiling`` one ceiling, ``--course ceiling-curb`` a ceiling then a curb (in that
order, ``env_config.shuffle=false``). ``--switch-on-terrain`` trains the meta-policies with
``switch_on_terrain=true`` (and ``--switch-period 500``).

    python benchmarks/walker_primitives.py --storage-path ~/walker --seeds 0,1,2 [--course reduced]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tesp.report.stats import bootstrap_ci  # noqa: E402

SKILLS = ("walker_forward", "walker_jump", "walker_crawl")
COURSE = "walker_obstacle_course"
# --course: the course's env options (the full course: none).
COURSES = {
    "full": {},
    "reduced": {"kinds": ["curb", "ceiling"]},
    "ceiling": {"kinds": ["ceiling"]},
    "ceiling-curb": {"kinds": ["ceiling", "curb"], "shuffle": False},
}


def option_strings(options: dict) -> list[str]:
    """``KEY=VALUE`` strings of env options, as ``--env-option`` and ``--set env_config.`` read them."""
    text = {bool: lambda v: str(v).lower(), list: lambda v: f"[{', '.join(v)}]"}
    return [f"{k}={text.get(type(v), str)(v)}" for k, v in options.items()]


def train(storage: Path, name: str, args: list[str]) -> Path:
    """Run (or resume, or skip) ``main_train.py`` as experiment ``name``; returns its folder."""
    folder = storage / name
    if any(folder.glob("*/checkpoint_*/algorithm_state.pkl")) and (folder / "done").is_file():
        return folder
    resume = ["--resume", str(folder)] if folder.is_dir() else []
    cmd = [sys.executable, str(REPO / "main_train.py"), *args, "--storage-path", str(storage), "--name", name]
    if subprocess.run(cmd + resume).returncode == 0:
        (folder / "done").touch()
    return folder


def test(run: Path, episodes: int, env: str | None = None, options: list[str] = ()) -> dict:
    """``main_test.py`` on the newest checkpoint of ``run``; its summary (the JSON it wrote)."""
    cmd = [sys.executable, str(REPO / "main_test.py"), str(run), "--episodes", str(episodes)]
    cmd += ["--env", env] if env else []
    cmd += [arg for option in options for arg in ("--env-option", option)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    (written,) = [
        Path(line[6:]) for line in out.splitlines() if line.startswith("wrote ") and line.endswith(".json")
    ]
    return json.loads(written.read_text()) | {"path": str(written)}


class Oracle:
    """Switches the skills every ``period`` steps by the env's privileged terrain, like the anchor's
    ``meta_oracle``: the next obstacle's skill (a curb: jump, a ceiling: crawl) once it starts
    within ``reach`` m ahead of the torso, walking otherwise. An upper bound of what switching
    the shipped skills can reach without fine-tuning: if it passes nothing, the skills (and their
    transitions) are what limits the meta-policy, not its learning. With ``slip`` > 0 each of its
    obstacle picks is replaced by walking with that probability: how reliably a meta-policy must
    pick the right skill at every decision before picking it pays at all."""

    SKILL = {"curb": "walker_jump", "ceiling": "walker_crawl", None: "walker_forward"}

    def __init__(
        self, env, skills: dict[str, Path], period: int = 30, reach: float = 2.0, slip: float = 0.0
    ) -> None:
        from tesp.checkpoints.policies import SavedPolicy

        self.env, self.period, self.reach, self.slip = env, period, reach, slip
        self.rng = np.random.default_rng(0)
        self.skills = {s: SavedPolicy.from_checkpoint(path, env) for s, path in skills.items()}

    def reset(self) -> None:
        self.t, self.skill = 0, "walker_forward"

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        if self.t % self.period == 0:
            nxt = self.env.unwrapped.next_obstacle()
            near = nxt is not None and nxt[1] - self.env.unwrapped.torso_x() < self.reach
            self.skill = self.SKILL[nxt[0] if near and self.rng.random() >= self.slip else None]
        self.t += 1
        return self.skills[self.skill].act(obs, explore)


def oracle(skills: dict[str, Path], episodes: int, options: dict, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Obstacles passed and returns per episode of :class:`Oracle` (``kwargs``) over the skills (seed 0)."""
    from tesp.commands.run_policy import run_episodes
    from tesp.envs import make_env

    env = make_env(COURSE, options)
    rows, _ = run_episodes(Oracle(env, skills, **kwargs), env, episodes, seed=0)
    return np.array([r["obstacles_passed"] for r in rows]), np.array([r["return"] for r in rows])


def row(name: str, values: list[float], success: list[float]) -> str:
    lo, hi = bootstrap_ci(np.array(values))
    return f"| {name} | {np.mean(values):.2f} [{float(lo):.2f}, {float(hi):.2f}] | {np.mean(success):.2f} | {len(values)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--skills", choices=("shipped", "train"), default="shipped")
    parser.add_argument("--skill-iters", type=int, default=375)
    parser.add_argument("--iters", type=int, default=125)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--course", choices=tuple(COURSES), default="full")
    parser.add_argument(
        "--oracle-only", action="store_true", help="only the oracle switching row (no training)"
    )
    parser.add_argument("--oracle-reach", type=float, default=2.0, help="m ahead (Oracle)")
    parser.add_argument("--oracle-slip", type=float, default=0.0, help="probability (Oracle)")
    parser.add_argument("--switch-on-terrain", action="store_true")
    args = parser.parse_args()
    storage = Path(args.storage_path).expanduser().resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    options = COURSES[args.course]
    option = option_strings(options)  # main_test.py --env-option
    course = [a for o in option for a in ("--set", f"env_config.{o}")]  # main_train.py
    switching = (
        ["--set", "switch_on_terrain=true", "--switch-period", "500"] if args.switch_on_terrain else []
    )
    tag = "-terrain" if args.switch_on_terrain else ""

    if args.skills == "shipped":  # copied, so that main_test.py writes its files beside the copy
        skills = {s: storage / "skills" / s for s in SKILLS}
        for s, path in skills.items():
            if not path.is_dir():
                shutil.copytree(REPO / "skills" / s, path)
    else:
        skills = {
            s: train(
                storage, f"skill-{s}", ["--env", s, "--alg", "ppo", "--stop-iters", str(args.skill_iters)]
            )
            for s in SKILLS
        }
    passed, returns = oracle(skills, args.episodes, options, reach=args.oracle_reach, slip=args.oracle_slip)
    lo, hi = bootstrap_ci(passed)
    oracle_row = (
        f"| oracle switching of the skills | {passed.mean():.2f} [{float(lo):.2f}, {float(hi):.2f}] | - | 1 |"
    )
    if args.oracle_only:
        print(oracle_row)
        print(f"mean return {returns.mean():.0f}")
        return
    primitives = ",".join(f"{s}={path}" for s, path in skills.items())
    methods: dict[str, list[Path]] = {
        "primitives (transitions)": [],
        "primitives (frozen)": [],
        "ppo (scratch)": [],
    }
    for seed in seeds:
        common = ["--env", COURSE, "--seed", str(seed), "--stop-iters", str(args.iters), *course]
        for label, finetune in (("primitives (transitions)", "transitions"), ("primitives (frozen)", "none")):
            meta = ["--alg", "primitives", "--primitives", primitives, "--finetune", finetune]
            methods[label].append(
                train(storage, f"{args.course}-{finetune}{tag}-{seed}", common + meta + switching)
            )
        methods["ppo (scratch)"].append(
            train(storage, f"{args.course}-scratch-{seed}", common + ["--alg", "ppo"])
        )

    print(f"\nObstacles passed per episode on the {args.course} course ({args.episodes} episodes per run)")
    print("| method | obstacles passed (95% CI over seeds) | success | seeds |\n|---|---|---|---|")
    for label, runs in methods.items():
        summaries = [test(run, args.episodes)["mean"] for run in runs]
        print(row(label, [s["obstacles_passed"] for s in summaries], [s["success"] for s in summaries]))
    print(oracle_row)
    for s, path in skills.items():
        # The skills were trained on their own env; alone on the same course. One run: the CI is
        # over its episodes.
        summary = test(path, args.episodes, env=COURSE, options=option)
        csv = Path(summary["path"]).with_suffix(".csv")
        passed = np.genfromtxt(csv, delimiter=",", names=True)["obstacles_passed"]
        lo, hi = bootstrap_ci(np.atleast_1d(passed))
        print(f"| {s} alone | {np.mean(passed):.2f} [{float(lo):.2f}, {float(hi):.2f}] | "
              f"{summary['mean']['success']:.2f} | 1 |")  # fmt: skip


if __name__ == "__main__":
    main()
