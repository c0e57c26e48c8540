"""Physics versus sampling on the MuJoCo task suite: what the policy and RLlib cost per env step.

Per env, on one core each:

- ``physics``: ``mujoco.mj_step`` alone, ``frame_skip`` (5) steps per env step, no Python env code;
- ``env.step``: the gymnasium env's ``step`` with random actions (physics, observation, reward);
- ``sampler``: env steps per second of the engine's sampling path with one EnvRunner
  (``num_env_runners=1``, so one core samples while the driver waits): the per-env policy MLP of
  ``configs/<env>/maml.yaml`` on 25 vectorised sub-envs, complete 200-step episodes, baseline
  fit and GAE included;

and the ratios sampler / physics and sampler / env.step.

    python benchmarks/env_throughput.py [--envs wheeled ant ...] [--tasks 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import sampler_rate, start_ray

SUITE = ["wheeled", "ant", "reacher_2_link", "reacher_4_link"]


def physics_rate(name: str, seconds: float = 2.0) -> tuple[float, float]:
    """(raw mj_step env-steps/s, env.step steps/s) for ``name``."""
    import mujoco

    from tesp.envs import make_env

    env = make_env(name)
    env.set_task(env.task_pools()["D"][0])
    env.reset(seed=0)
    model, data = env.model, env.data
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_step(model, data, nstep=env.frame_skip)
        n += 1
    raw = n / (time.perf_counter() - start)

    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(1000, *env.action_space.shape))
    env.reset(seed=0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(actions[n % 1000])
        n += 1
        if terminated or truncated:
            env.reset()
    return raw, n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=SUITE)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = {name: physics_rate(name) for name in args.envs}
    start_ray()
    for name in args.envs:
        rows[name] += (sampler_rate("maml", name, 1, args.tasks, 25, args.rounds, {"validation_freq": 0}),)
    print(
        f"\nenv steps per second on one core ({args.tasks} tasks x 25 episodes x 200 steps per sampler round)"
    )
    print(
        f"{'env':>15} | {'physics':>9} | {'env.step':>9} | {'sampler':>8} | {'sampler/physics':>15} | {'sampler/env.step':>16}"
    )
    for name, (raw, step, sampled) in rows.items():
        print(
            f"{name:>15} | {raw:>9,.0f} | {step:>9,.0f} | {sampled:>8,.0f} | {sampled / raw:>15.2f} | {sampled / step:>16.2f}"
        )


if __name__ == "__main__":
    main()
