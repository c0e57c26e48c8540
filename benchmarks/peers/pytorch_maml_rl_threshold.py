"""Run tristandeleu/pytorch-maml-rl's MAML-TRPO on its 2D navigation until a return threshold.

Runs inside the peer's own virtualenv (``setup_pytorch_maml_rl.sh``), not the project's: it imports
the peer's package from ``--peer`` and drives it the way the peer's ``train.py`` does (its config
``configs/maml/2d-navigation.yaml``: 20 tasks x 20 episodes, one inner step of 0.1, a 2x64 tanh
policy, TRPO with max KL 0.01), stopping when the post-adaptation return (the peer's
``valid_returns``) averages ``--threshold`` or better over ``--window`` consecutive batches.
Prints one JSON line per batch and a last one with the result, for ``maml_point_threshold.py``.

The one change to the peer: ``torch.lstsq`` (removed from torch in 2.0, used by its linear
baseline) is provided as a wrapper of ``torch.linalg.lstsq`` with the old argument order.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer", required=True, help="a pytorch-maml-rl checkout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=-16.0)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=150)
    parser.add_argument(
        "--num-workers", type=int, default=1, help="the peer's default on 2 cores: cpu_count - 1"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.peer).resolve()))

    import gym
    import numpy as np
    import torch
    import yaml

    # torch.lstsq(B, A) -> (solution, QR); only the solution is read.
    torch.lstsq = lambda b, a: (torch.linalg.lstsq(a, b).solution, None)

    import maml_rl.envs  # noqa: F401  (registers 2DNavigation-v0)
    from maml_rl.baseline import LinearFeatureBaseline
    from maml_rl.metalearners import MAMLTRPO
    from maml_rl.samplers import MultiTaskSampler
    from maml_rl.utils.helpers import get_input_size, get_policy_for_env
    from maml_rl.utils.reinforcement_learning import get_returns

    with open(Path(args.peer) / "configs/maml/2d-navigation.yaml") as f:
        config = yaml.load(f, Loader=yaml.FullLoader)
    torch.manual_seed(args.seed)
    env = gym.make(config["env-name"], **config.get("env-kwargs", {}))
    env.close()
    policy = get_policy_for_env(env, hidden_sizes=config["hidden-sizes"], nonlinearity=config["nonlinearity"])
    policy.share_memory()
    baseline = LinearFeatureBaseline(get_input_size(env))
    sampler = MultiTaskSampler(
        config["env-name"],
        env_kwargs=config.get("env-kwargs", {}),
        batch_size=config["fast-batch-size"],
        policy=policy,
        baseline=baseline,
        env=env,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    learner = MAMLTRPO(policy, fast_lr=config["fast-lr"], first_order=config["first-order"], device="cpu")
    post, steps, start, hit = [], 0, time.perf_counter(), None
    try:
        for it in range(1, args.max_iters + 1):
            tasks = sampler.sample_tasks(num_tasks=config["meta-batch-size"])
            futures = sampler.sample_async(
                tasks,
                num_steps=config["num-steps"],
                fast_lr=config["fast-lr"],
                gamma=config["gamma"],
                gae_lambda=config["gae-lambda"],
                device="cpu",
            )
            learner.step(
                *futures,
                max_kl=config["max-kl"],
                cg_iters=config["cg-iters"],
                cg_damping=config["cg-damping"],
                ls_max_steps=config["ls-max-steps"],
                ls_backtrack_ratio=config["ls-backtrack-ratio"],
            )
            train, valid = sampler.sample_wait(futures)
            steps += sum(int(sum(e.lengths)) for e in train[0]) + sum(int(sum(e.lengths)) for e in valid)
            pre_r, post_r = float(np.mean(get_returns(train[0]))), float(np.mean(get_returns(valid)))
            post.append(post_r)
            elapsed = time.perf_counter() - start
            print(
                json.dumps(
                    {"iter": it, "pre": pre_r, "post": post_r, "env_steps": steps, "seconds": elapsed}
                ),
                flush=True,
            )
            if len(post) >= args.window and np.mean(post[-args.window :]) >= args.threshold:
                hit = {"iters": it, "seconds": elapsed, "env_steps": steps}
                break
    finally:
        sampler.close()
    print(json.dumps({"result": hit}), flush=True)


if __name__ == "__main__":
    main()
