"""Meta-SGD's losses are MAML's (Li et al. 2017, Algorithm 2 applied to RL): the learned step
sizes enter through the engine's inner step ``theta - alpha (.) g`` and get their gradient from
the outer loss through it."""

from __future__ import annotations

from tesp.meta.meta_learner import MetaLearner


class MetaSGDLearner(MetaLearner):
    pass
