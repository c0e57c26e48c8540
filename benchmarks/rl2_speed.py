"""RL²'s sampling and iteration time, and where an env step's time goes, beside the engine's.

Per env (default ``point`` and ``half_cheetah_vel``), on one core each, alternated ``--repeats``
times (medians printed):

- ``physics driven`` (MuJoCo envs): ``mj_step`` alone with random controls and real episodes
  (:func:`env_throughput.physics_rate`);
- ``env.step``: the task env's ``step`` with random actions;
- ``trial.step``: the same inside RL²'s :class:`~tesp.algorithms.rl2.trial_env.TrialEnv` (the
  previous action, reward and the episode flag appended to the observation);
- ``rl2 sampler``: env steps per second of one RL² EnvRunner (``TrialEnvRunner``, the GRU policy
  of ``configs/<env>/rl2.yaml`` on ``num_envs_per_env_runner`` sub-envs, RLlib's connectors and
  episode bookkeeping), the driver waiting;
- ``maml sampler``: the gradient methods' engine on the same env (one EnvRunner, the MLP of
  ``configs/<env>/maml.yaml``, 10 episodes per task);
- ``rl2 iteration``: seconds of one RL² training iteration at the config's batch and its share
  spent sampling (the rest: RLlib's PPO Learner on the GRU sequences, the weight sync).

and per env step in microseconds: the env, the trial wrapper, and the rest of the RL² sampler's
step (the GRU policy's forward pass, RLlib's connectors and episodes).

    python benchmarks/rl2_speed.py [--envs point half_cheetah_vel] [--iters 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import sampler_rate, start_ray
from env_throughput import physics_rate, step_rate


def step_rates(name: str, seconds: float = 2.0) -> tuple[float, float]:
    """(env.step steps/s, TrialEnv.step steps/s) with random actions."""
    from tesp.algorithms.rl2.rl2 import trial_env
    from tesp.envs import make_env

    rates = []
    for env in (make_env(name), trial_env(name, {}, 2)):
        actions = np.random.default_rng(0).uniform(-1, 1, size=(1000, *env.action_space.shape))
        rates.append(step_rate(env, actions.astype(env.action_space.dtype), seconds))
    return rates[0], rates[1]


def rl2_rates(name: str, iters: int) -> tuple[float, float, float]:
    """(RL² sampler env steps/s on one EnvRunner, seconds per training iteration, the share of
    the iteration spent sampling) at ``configs/<name>/rl2.yaml``'s batch."""
    from tesp.settings import resolve_config

    config, _, _ = resolve_config("rl2", name, {"num_env_runners": 1, "validation_freq": 0})
    algo = config.build_algo()
    try:
        batch = config.train_batch_size
        group = algo.env_runner_group
        group.foreach_env_runner(
            lambda r: r.sample(num_timesteps=batch, explore=True), local_env_runner=False
        )
        start = time.perf_counter()
        (episodes,) = group.foreach_env_runner(
            lambda r: sum(len(e) for e in r.sample(num_timesteps=batch, explore=True)), local_env_runner=False
        )
        sampled = episodes / (time.perf_counter() - start)
        algo.train()  # warm-up
        start = time.perf_counter()
        steps = 0.0
        for _ in range(iters):
            steps += algo.train()["meta"]["env_steps"]
        per_iter = (time.perf_counter() - start) / iters
        return sampled, per_iter, min(1.0, steps / iters / sampled / per_iter)
    finally:
        algo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["point", "half_cheetah_vel"])
    parser.add_argument("--iters", type=int, default=3, help="RL² training iterations timed per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are printed")
    args = parser.parse_args()
    start_ray(1)  # one CPU: one EnvRunner samples while the driver waits
    samples: dict[str, list] = {name: [] for name in args.envs}
    for _ in range(args.repeats):
        for name in args.envs:
            from tesp.envs import make_env

            driven = physics_rate(name)[1] if hasattr(make_env(name), "model") else float("nan")
            maml = sampler_rate("maml", name, 1, 4, 10, 2, {"validation_freq": 0})
            samples[name].append((driven, *step_rates(name), *rl2_rates(name, args.iters), maml))
    print(f"\nenv steps per second on one core (medians of {args.repeats} alternating repeats)")
    head = ["env", "physics driven", "env.step", "trial.step", "rl2 sampler", "maml sampler", "rl2 / maml",
            "rl2 / env.step", "rl2 s / iter", "sampling share"]  # fmt: skip
    print(" | ".join(f"{h:>14}" for h in head))
    costs = {}
    for name, values in samples.items():
        driven, env_step, trial_step, rl2, per_iter, share, maml = np.median(np.array(values), axis=0)
        cells = [f"{v:,.0f}" for v in (driven, env_step, trial_step, rl2, maml)]
        cells += [f"{rl2 / maml:.2f}", f"{rl2 / env_step:.2f}", f"{per_iter:.1f}", f"{share:.2f}"]
        print(" | ".join(f"{c:>14}" for c in [name, *cells]))
        costs[name] = (1e6 / env_step, 1e6 / trial_step - 1e6 / env_step, 1e6 / rl2 - 1e6 / trial_step)
    print("per env step of the RL² sampler (us): " + "; ".join(
        f"{n}: env {e:.1f}, trial wrapper {w:.1f}, policy + RLlib {r:.1f}" for n, (e, w, r) in costs.items()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
