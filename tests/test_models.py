import torch

from .helpers import make_policy


def test_normc_init_and_initial_distribution():
    policy = make_policy(hidden=(16, 16), free_log_std=False)
    layers = [m for m in policy.pi if isinstance(m, torch.nn.Linear)]
    torch.testing.assert_close(layers[0].weight.norm(dim=1), torch.ones(16))
    torch.testing.assert_close(layers[-1].weight.norm(dim=1), torch.full((4,), 0.01))
    out = policy.dist_inputs(torch.randn(100, 2))
    mean, log_std = out.chunk(2, dim=-1)
    assert (
        mean.abs().max() < 0.05 and log_std.abs().max() < 0.05
    )  # mu ~ 0, sigma ~ 1 (docs/original_release.md#policy)


def test_functional_forward_equals_the_module_forward():
    for free in (True, False):
        policy = make_policy(free_log_std=free)
        obs = torch.randn(7, 2)
        torch.testing.assert_close(policy.dist_inputs(obs, policy.meta_params()), policy.dist_inputs(obs))
        shifted = {k: v + 1.0 for k, v in policy.meta_params().items()}
        assert not torch.allclose(policy.dist_inputs(obs, shifted), policy.dist_inputs(obs))


def test_step_sizes_are_learnable_and_not_sent_to_env_runners():
    policy = make_policy(learn_step_sizes=True, init_step_size=0.3)
    names = set(policy.meta_params())
    assert {n for n, _ in policy.named_parameters() if n.startswith("step_sizes")}
    assert all(torch.allclose(policy.step_size(n), torch.tensor(0.3)) for n in names)
    inference_state = policy.get_state(inference_only=True)
    assert inference_state and all(k.startswith("pi.") for k in inference_state)
    runner = make_policy(inference_only=True)
    runner.set_state(inference_state)


def test_action_connector_samples_the_policy_distribution_and_records_it():
    from ray.rllib.core.columns import Columns

    from tesp.models.connectors import SampleGaussianActions

    torch.manual_seed(0)
    inputs = torch.tensor([[0.5, -1.0, 0.0, -1.0]]).repeat(20000, 1)  # mean (0.5, -1), std (1, e^-1)
    out = SampleGaussianActions()(
        rl_module=None, batch={Columns.ACTION_DIST_INPUTS: inputs}, episodes=[], explore=True
    )
    actions = torch.as_tensor(out[Columns.ACTIONS])
    torch.testing.assert_close(actions.mean(0), torch.tensor([0.5, -1.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(
        actions.std(0), torch.tensor([1.0, float(torch.exp(torch.tensor(-1.0)))]), atol=0.02, rtol=0
    )
    # The distribution is recorded with the step (the learner computes log-probabilities from it).
    torch.testing.assert_close(torch.as_tensor(out[Columns.ACTION_DIST_INPUTS]), inputs)
    greedy = SampleGaussianActions()(
        rl_module=None, batch={Columns.ACTION_DIST_INPUTS: inputs[:2]}, episodes=[], explore=False
    )
    assert greedy[Columns.ACTIONS].tolist() == [[0.5, -1.0], [0.5, -1.0]]
