"""MAML's losses are the engine's own (Finn et al. 2017, section 3.2 and Algorithm 3): VPG with
GAE in the inner loop, PPO-clip or TRPO's surrogate on the post-adaptation batch outside, no
penalty term."""

from __future__ import annotations

from tesp.meta.meta_learner import MetaLearner


class MAMLLearner(MetaLearner):
    pass
