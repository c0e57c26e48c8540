"""What each method's inner loop adapts, and the embedding regulariser, through the real learner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tesp.cli import resolve_config
from tesp.meta.sampler import SampleJob

pytestmark = pytest.mark.ray

SMALL = {"meta_batch_size": 2, "episodes_per_task": 3, "num_envs_per_env_runner": 3, "num_env_runners": 0}

# Which parameters each method's inner step must change: a predicate on the parameter name.
ADAPTED = {
    "maml": lambda name: name.startswith("pi."),
    "meta_sgd": lambda name: name.startswith("pi."),
    "adaptsv": lambda name: name == "latent",
}


@pytest.fixture(scope="module", params=sorted(ADAPTED))
def method(request, ray_session):
    config, _, _ = resolve_config(request.param, "point", {**SMALL, "seed": 0})
    algo = config.build_algo()
    yield request.param, algo
    algo.stop()


def test_inner_step_changes_exactly_the_adapted_parameters(method):
    name, algo = method
    learner = algo.learner_group._learner
    theta = learner.initial_weights()
    tasks = algo.task_env.sample_tasks(2)
    results = algo.sampler.sample([SampleJob(i, t, theta) for i, t in enumerate(tasks)])
    adapted = learner.adapt_tasks({i: theta for i in results}, {i: r.batch for i, r in results.items()})
    for task_id, weights in adapted.items():
        assert set(weights) == set(theta)
        for key in theta:
            changed = not np.array_equal(weights[key], theta[key])
            assert changed == ADAPTED[name](key), f"{name}: {key} changed={changed} (task {task_id})"
    # The learner's own parameters are untouched by adaptation.
    for key, value in learner.initial_weights().items():
        np.testing.assert_array_equal(value, theta[key])


def test_embedding_regulariser_value_and_gradient(ray_session):
    config, _, _ = resolve_config(
        "adaptsv", "point", {**SMALL, "embedding_reg_coeff": 0.3, "model.latent_dim": 4}
    )
    algo = config.build_algo()
    try:
        learner = algo.learner_group._learner
        params = dict(learner.meta_params())
        z = torch.tensor([0.5, -1.0, 2.0, 0.0], requires_grad=True)
        params["latent"] = z
        n = 5
        batch = {
            "obs": torch.zeros(n, 2),
            "actions": torch.zeros(n, 2),
            "dist_inputs": torch.zeros(n, 4),
            "advantages": torch.zeros(n),
            "mask": torch.ones(n),
        }
        terms = learner.task_outer_terms(params, batch)
        # eta * mean_j z_j^2 = 0.3 * (0.25 + 1 + 4 + 0) / 4
        assert terms["regularizer"].item() == pytest.approx(0.3 * 5.25 / 4)
        assert terms["embedding_norm"].item() == pytest.approx(np.sqrt(5.25))
        (grad,) = torch.autograd.grad(terms["regularizer"], z)
        torch.testing.assert_close(grad, 2 * 0.3 * z.detach() / 4)
        # With zero advantages the PPO term is 0, so the outer loss is the regulariser alone.
        assert terms["ppo"].item() == pytest.approx(terms["regularizer"].item())
    finally:
        algo.stop()
