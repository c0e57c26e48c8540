"""Where the sampler's time goes per env step, and what stepping the sub-envs in C would save.

Per env, in one process on one core (``num_env_runners=0``: the EnvRunner is in the driver):

- the sampler's wall-clock per env step (``TaskEnvRunner.sample_task``, the per-env MLP of
  ``configs/<env>/maml.yaml`` on 25 sub-envs, complete 200-step episodes, baseline fit and GAE
  included), split into the env's batched step (``step_batch``: physics, control writes,
  observations, rewards, flags), the RLModule's forward pass, RLlib's env-to-module and
  module-to-env connector pipelines, and the rest (episode bookkeeping, recording, the batch);
- the same number of ``mj_step`` calls on one env with random controls (the physics alone);
- 25 sub-envs stepped by a Python loop of ``mj_step`` calls against MuJoCo's ``rollout`` module
  (all 25 stepped in one C call from a state array; states kept as arrays), alternated
  repeats, medians. ``rollout`` restarts each call from the state array without the solver's
  warm start, so it does not reproduce ``env.step`` bit for bit; this measures only its speed.

    python benchmarks/sampler_breakdown.py [--envs wheeled ...] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from common import start_ray
from env_throughput import SUITE

SUB_ENVS = 25


def _timed(totals: dict, name: str, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        totals[name] += time.perf_counter() - start
        return out

    return wrapper


def breakdown(name: str, jobs: int = 6) -> dict[str, float]:
    """Microseconds per env step of each part of ``jobs`` sampling jobs of 25 episodes."""
    import mujoco

    from tesp.settings import resolve_config

    settings = {
        "num_env_runners": 0,
        "num_envs_per_env_runner": SUB_ENVS,
        "episodes_per_task": SUB_ENVS,
        "meta_batch_size": 2,
        "validation_freq": 0,
    }
    config, _, _ = resolve_config("maml", name, settings)
    algo = config.build_algo()
    try:
        (weights, *_) = algo.on_learner(lambda learner: learner.start_tasks([-1]))
        runner = algo.env_runner_group.local_env_runner
        task = algo.task_env.sample_tasks(1)[0]
        runner.sample_task(task, weights, SUB_ENVS, 0, 0.99, 0.97)  # warm-up
        totals: dict[str, float] = defaultdict(float)
        env = runner.env.unwrapped.envs[0].unwrapped
        env_class = type(env)
        step_batch = env_class.step_batch
        env_class.step_batch = staticmethod(_timed(totals, "step_batch", step_batch))
        runner._env_to_module = _timed(totals, "env_to_module", runner._env_to_module)
        runner._module_to_env = _timed(totals, "module_to_env", runner._module_to_env)
        runner.module.forward_exploration = _timed(totals, "forward", runner.module.forward_exploration)
        try:
            steps, start = 0, time.perf_counter()
            for seed in range(1, jobs + 1):
                steps += int(runner.sample_task(task, weights, SUB_ENVS, seed, 0.99, 0.97).mask.sum())
            total = time.perf_counter() - start
        finally:
            env_class.step_batch = step_batch
        controls = np.random.default_rng(0).uniform(-1, 1, (1000, env.model.nu)) * env.ctrl_max
        env.reset(seed=0)
        start = time.perf_counter()
        for k in range(steps):
            if k % env.horizon == 0:
                env.reset()
            env.data.ctrl[:] = controls[k % 1000]
            mujoco.mj_step(env.model, env.data, nstep=env.frame_skip)
        physics = time.perf_counter() - start
    finally:
        algo.stop()
    parts = dict(totals)
    parts["rest"] = total - sum(parts.values())
    return {"total": total, "physics": physics, **parts} | {"_steps": steps}


def rollout_versus_loop(name: str, steps: int = 200) -> tuple[float, float]:
    """Env steps per second of 25 sub-envs: a Python loop of ``mj_step`` calls, and one
    ``mujoco.rollout`` call per env step for all of them."""
    import mujoco
    from mujoco import rollout

    from tesp.envs import make_env

    envs = [make_env(name, {"horizon": 10**9}) for _ in range(SUB_ENVS)]
    for i, env in enumerate(envs):
        env.set_task(env.task_pools()["D"][0])
        env.reset(seed=i)
    model, frame_skip = envs[0].model, envs[0].frame_skip
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.empty((SUB_ENVS, mujoco.mj_stateSize(model, spec)))
    for i, env in enumerate(envs):
        mujoco.mj_getState(model, env.data, state[i], spec)
    controls = np.random.default_rng(0).uniform(-1, 1, (steps, SUB_ENVS, model.nu)) * envs[0].ctrl_max
    start = time.perf_counter()
    for k in range(steps):
        for i, env in enumerate(envs):
            env.data.ctrl[:] = controls[k, i]
            mujoco.mj_step(model, env.data, nstep=frame_skip)
    loop = SUB_ENVS * steps / (time.perf_counter() - start)
    scratch, models = mujoco.MjData(model), [model] * SUB_ENVS
    out = np.empty((SUB_ENVS, frame_skip, state.shape[1]))
    sensors = np.empty((SUB_ENVS, frame_skip, model.nsensordata))
    start = time.perf_counter()
    for k in range(steps):
        ctrl = np.repeat(controls[k][:, None, :], frame_skip, axis=1)
        rollout.rollout(
            models, [scratch], state, ctrl, skip_checks=True, nstep=frame_skip, state=out, sensordata=sensors
        )
        state = out[:, -1].copy()
    return loop, SUB_ENVS * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=SUITE)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are printed")
    args = parser.parse_args()
    import torch

    start_ray(1)
    torch.set_num_threads(1)
    parts: dict[str, list] = defaultdict(list)
    stepping: dict[str, list] = defaultdict(list)
    for _ in range(args.repeats):
        for name in args.envs:
            parts[name].append(breakdown(name))
            stepping[name].append(rollout_versus_loop(name))
    keys = ["total", "step_batch", "forward", "env_to_module", "module_to_env", "rest", "physics"]
    print(f"\nmicroseconds per env step (25 sub-envs, one core, medians of {args.repeats} repeats)")
    print(" | ".join(f"{h:>14}" for h in ["env", *keys, "physics/total"]))
    for name in args.envs:
        us = {k: np.median([p[k] / p["_steps"] * 1e6 for p in parts[name]]) for k in keys}
        cells = [f"{us[k]:.1f}" for k in keys] + [f"{us['physics'] / us['total']:.2f}"]
        print(" | ".join(f"{c:>14}" for c in [name, *cells]))
    print("\n25 sub-envs stepped: Python loop of mj_step vs mujoco.rollout (env steps/s)")
    for name in args.envs:
        loop, rolled = np.median(np.array(stepping[name]), axis=0)
        print(f"{name:>14} | loop {loop:,.0f} | rollout {rolled:,.0f} | rollout / loop {rolled / loop:.2f}")


if __name__ == "__main__":
    main()
