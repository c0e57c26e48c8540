"""Physics versus sampling on the MuJoCo task suite: what the policy and RLlib cost per env step.

Per env, on one core each:

- ``physics``: ``mujoco.mj_step`` alone, ``frame_skip`` (5) steps per env step, no Python env
  code: "at rest" from the reset state with zero controls (the measure of earlier runs), and
  "driven" with random controls changing every step and 200-step episodes from the reset state
  (the physics work of real episodes: the contacts and solver iterations of a moving robot);
- ``env.step``: the gymnasium env's ``step`` with random actions (physics, observation, reward);
- ``sampler``: env steps per second of the engine's sampling path with one EnvRunner
  (``num_env_runners=1``, so one core samples while the driver waits): the per-env policy MLP of
  ``configs/<env>/maml.yaml`` on 25 vectorised sub-envs, complete 200-step episodes, baseline
  fit and GAE included;

and the ratios of the sampler to each; ``bound / driven``: the ratio a sampler that did nothing
but the driven physics and the policy's forward pass (measured alone, same MLP, 25 observations
per call, one thread) would reach on one core.

    python benchmarks/env_throughput.py [--envs wheeled ant ...] [--tasks 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import sampler_rate, start_ray

SUITE = ["wheeled", "ant", "reacher_2_link", "reacher_4_link"]
LOCOMOTION = ["half_cheetah_vel", "ant_dir"]  # --envs half_cheetah_vel ant_dir


def physics_rate(name: str, seconds: float = 2.0) -> tuple[float, float, float]:
    """(raw mj_step env-steps/s at rest, the same driven by random controls, env.step steps/s)
    for ``name``."""
    import mujoco

    from tesp.envs import make_env

    env = make_env(name)
    env.set_task(env.task_pools().get("D", env.task_pools().get("D'"))[0])
    env.reset(seed=0)
    model, data = env.model, env.data
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mujoco.mj_step(model, data, nstep=env.frame_skip)
        n += 1
    rest = n / (time.perf_counter() - start)

    # Driven: the controls change every env step as in sampling (uniform in the action box,
    # scaled as the env scales them), and every episode restarts from the env's reset state
    # after its horizon, so contacts and solver work are those of real episodes.
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(1000, *env.action_space.shape))
    controls = actions * env.ctrl_max
    env.reset(seed=0)
    n, elapsed = 0, 0.0
    while elapsed < seconds:
        env.reset()
        start = time.perf_counter()
        for t in range(env.horizon):
            data.ctrl[:] = controls[(n + t) % 1000]
            mujoco.mj_step(model, data, nstep=env.frame_skip)
        elapsed += time.perf_counter() - start
        n += env.horizon
    driven = n / elapsed

    return rest, driven, step_rate(env, actions, seconds)


def step_rate(env, actions: np.ndarray, seconds: float = 2.0) -> float:
    """``env.step`` calls per second over ``actions`` (cycled), episodes restarted at their end."""
    env.reset(seed=0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(actions[n % len(actions)])
        n += 1
        if terminated or truncated:
            env.reset()
    return n / (time.perf_counter() - start)


def policy_seconds(name: str, sub_envs: int = 25, seconds: float = 2.0) -> float:
    """Seconds per env step of the sampling policy's forward pass alone: the MLP of
    ``configs/<name>/maml.yaml`` (tanh, mean and log-std out) on ``sub_envs`` observations at a
    time, as the sampler calls it, one torch thread."""
    import torch

    from tesp.envs import make_env
    from tesp.settings import resolve_config

    env = make_env(name)
    config, _, _ = resolve_config("maml", name, {})
    hidden = config.model_config["hidden"]
    obs, act = env.observation_space.shape[0], env.action_space.shape[0]
    layers, width = [], obs
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.Tanh()]
        width = h
    mlp = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2 * act))
    x = torch.randn(sub_envs, obs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                mlp(x)
                n += 1
            return (time.perf_counter() - start) / (n * sub_envs)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=SUITE)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are printed")
    args = parser.parse_args()
    start_ray(1)  # one CPU: one EnvRunner samples while the driver waits
    samples: dict[str, list] = {name: [] for name in args.envs}
    for _ in range(args.repeats):  # every measure of an env close in time to the others
        for name in args.envs:
            rate = sampler_rate("maml", name, 1, args.tasks, 25, args.rounds, {"validation_freq": 0})
            samples[name].append((*physics_rate(name), rate, policy_seconds(name)))
    medians = {name: np.median(np.array(v), axis=0) for name, v in samples.items()}
    rows = {name: tuple(m[:4]) for name, m in medians.items()}
    policy = {name: m[4] for name, m in medians.items()}
    print(
        f"\nenv steps per second on one core ({args.tasks} tasks x 25 episodes x 200 steps per sampler round; "
        f"medians of {args.repeats} alternating repeats)"
    )
    head = [
        "env",
        "physics at rest",
        "physics driven",
        "env.step",
        "sampler",
        "s / rest",
        "s / driven",
        "s / env.step",
    ]
    print(" | ".join(f"{h:>15}" for h in head + ["bound / driven"]))
    for name, (rest, driven, step, sampled) in rows.items():
        cells = [f"{v:,.0f}" for v in (rest, driven, step, sampled)]
        cells += [f"{sampled / v:.2f}" for v in (rest, driven, step)]
        # The best a sampler that steps the physics and runs the policy on the same core can do:
        # nothing but the driven physics and the policy's forward pass per env step.
        bound = (1 / driven) / (1 / driven + policy[name])
        print(" | ".join(f"{c:>15}" for c in [name, *cells, f"{bound:.2f}"]))
    print(
        "policy forward per env step (25 observations per call, one thread): "
        + ", ".join(f"{n} {policy[n] * 1e6:.1f} us" for n in args.envs)
    )


if __name__ == "__main__":
    main()
