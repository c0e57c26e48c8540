"""PEARL's losses (Rakelly et al. 2019, Eq. 4-6) on RLlib's SAC Learner: the critic's, actor's
and temperature's losses are RLlib's SAC losses on the z-augmented inputs
(:class:`~tesp.algorithms.pearl.pearl_rl_module.PEARLModule`); the context encoder has its own
optimizer, stepped on the critics' loss plus ``kl_lambda`` times the KL to the prior (the
paper's objective for the inference network: the critic's Bellman error and the information
bottleneck).

Each optimizer's gradient is its own loss's (``torch.autograd.grad``), so that the encoder's
loss, which reaches the critics too, does not add into their gradients, and the actor's, which
reaches the critics, does not either. The critics' gradients come from the encoder's backward
pass: the encoder's loss is the two critics' losses plus the KL, and neither critic's parameters
appear in the other critic's loss or in the KL, so its gradient with respect to a critic's
parameters is that critic's own loss's (one backward pass for three optimizers instead of
three: a gradient step at 2 x 64 took 47.0 ms instead of 50.1, medians of 4 alternated
repeats beside a running study)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.sac.sac_learner import QF_LOSS_KEY, QF_TWIN_LOSS_KEY
from ray.rllib.algorithms.sac.torch.sac_torch_learner import SACTorchLearner
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import update_target_network
from ray.rllib.utils.metrics import ALL_MODULES

from tesp.algorithms.pearl.pearl_rl_module import CONTEXT, KL, TASK

ENCODER = "encoder"
#: the Learner's stats reported per iteration (means over its gradient steps)
REPORTED = ("kl_to_prior", QF_LOSS_KEY, "policy_loss", "alpha_value")


#: optimizers whose gradients the encoder's loss gives (see the module's docstring)
CRITICS = ("qf", "qf_twin")


def _passes(losses: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, list[str]]]:
    """(loss, the optimizers whose gradients its backward pass gives), one per backward pass."""
    shared = [name for name in CRITICS if name in losses] if ENCODER in losses else []
    passes = [(losses[ENCODER], [ENCODER, *shared])] if ENCODER in losses else []
    return passes + [
        (loss, [name]) for name, loss in losses.items() if name != ENCODER and name not in shared
    ]


class PEARLLearner(SACTorchLearner):
    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        super().configure_optimizers_for_module(module_id, config)
        params = self.get_parameters(self._module[module_id].context_encoder)
        self.register_optimizer(
            module_id=module_id,
            optimizer_name=ENCODER,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=config.context_lr,
        )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        total = super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=fwd_out
        )
        critics = self._temp_losses[(module_id, QF_LOSS_KEY)]
        if config.twin_q:
            critics = critics + self._temp_losses[(module_id, QF_TWIN_LOSS_KEY)]
        kl = fwd_out[KL]
        self._temp_losses[(module_id, f"{ENCODER}_loss")] = critics + config.kl_lambda * kl
        self.metrics.log_value((module_id, "kl_to_prior"), kl, window=1)
        return total + config.kl_lambda * kl

    def compute_gradients(self, loss_per_module, **kwargs):
        grads = {}
        for module_id in set(loss_per_module) - {ALL_MODULES}:
            optims = dict(self.get_optimizers_for_module(module_id))
            losses = {name: self._temp_losses.pop((module_id, f"{name}_loss")) for name in optims}
            for loss, names in _passes(losses):
                params = {
                    pid: p
                    for name in names
                    for pid, p in self.filter_param_dict_for_optimizer(self._params, optims[name]).items()
                }
                values = torch.autograd.grad(
                    loss, list(params.values()), retain_graph=True, allow_unused=True
                )
                for (pid, p), g in zip(params.items(), values, strict=True):
                    grads[pid] = torch.zeros_like(p) if g is None else g
        assert not self._temp_losses
        return grads

    # -- called by the algorithm (foreach_learner) ---------------------------------------------
    def pearl_update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One gradient step of every network on a meta-batch (``obs``, ``actions``,
        ``rewards``, ``next_obs``, ``terminateds`` over the tasks' rows, ``task``, ``context``),
        then the soft target update; returns the losses."""
        self._update({DEFAULT_MODULE_ID: self.tensors(batch)})
        module = self.module[DEFAULT_MODULE_ID].unwrapped()
        for main, target in module.get_target_network_pairs():
            update_target_network(main_net=main, target_net=target, tau=self.config.tau)
        self._weights_seq_no += 1  # the EnvRunners take the new weights (outside update())
        # What RLlib's Learner.update() does after each update: reduce the logged stats. Without
        # it the SAC loss's per-row TD errors pile up, each holding its step's autograd graph
        # (10 GB after a few hundred steps, measured).
        stats = self.metrics.reduce(compile=True).get(DEFAULT_MODULE_ID, {})
        return {k: float(stats[k]) for k in REPORTED if k in stats}

    def tensors(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """The meta-batch as the SAC losses read it (rewards scaled)."""
        rows = len(batch["rewards"])
        return {
            Columns.OBS: torch.as_tensor(batch["obs"]),
            Columns.ACTIONS: torch.as_tensor(batch["actions"]),
            Columns.REWARDS: torch.as_tensor(batch["rewards"]) * self.config.reward_scale,
            Columns.NEXT_OBS: torch.as_tensor(batch["next_obs"]),
            Columns.TERMINATEDS: torch.as_tensor(batch["terminateds"]) > 0.5,
            TASK: torch.as_tensor(batch["task"], dtype=torch.long),
            CONTEXT: torch.as_tensor(batch["context"]),
            "weights": torch.ones(rows),
            "n_step": torch.ones(rows),
        }

    def infer_latents(self, context: np.ndarray | None, n: int) -> np.ndarray:
        """``n`` draws of z for one task: the prior's without context, else its posterior's."""
        module = self.module[DEFAULT_MODULE_ID].unwrapped()
        tensor = None if context is None else torch.as_tensor(context)
        return module.infer_latent(tensor, n).numpy()
