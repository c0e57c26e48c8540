"""RLlib's ``MeanStdFilter`` connector with the EnvRunners' statistics merged correctly.

RLlib 2.60 merges an EnvRunner's running statistics into the central ones with Chan et al.'s
pairwise formula (``RunningStat.update``), reading the runner's ``mean_delta_array`` as the mean
of the observations it saw since the last sync. But the runner accumulates there the *change* of
its running mean since that sync (Welford's ``delta / n`` with the total count ``n``), so every
merge after the first pulls the mean toward 0 and inflates the variance toward the mean square:
in a 3M-step ``walker_forward`` run the torso height's mean ended at 0.02 where every
observation is ~1.2. Here each runner's deltas are turned back into its new observations' count,
mean and sum of squared deviations before RLlib's merge, which is then exact.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.connectors.env_to_module import MeanStdFilter as RLlibMeanStdFilter
from ray.rllib.utils.filter import RunningStat


def since_sync(state: dict[str, Any]) -> dict[str, Any]:
    """A runner's ``RunningStat`` state with its deltas made the statistics of what it pushed
    since the last sync: ``k`` new observations on top of ``n0`` synced ones, the running mean
    moved from ``m0`` to ``m`` (``mean_delta = m - m0``) and the sum of squared deviations by
    ``s_delta`` (Welford). The new observations' mean is ``m0 + (n0 + k) / k * mean_delta`` and
    their own sum of squares ``s_delta - n0 k / (n0 + k) (mean_new - m0)^2`` (Chan et al. 1979,
    "Updating formulae and a pairwise algorithm for computing sample variances")."""
    stat = RunningStat.from_state(state)
    k = stat.num_pushes_delta
    if k == 0:
        return state
    n0 = stat.num_pushes - k
    m0 = stat.mean_array - stat.mean_delta_array
    mean_new = m0 + stat.mean_delta_array * (stat.num_pushes / k)
    stat.sum_sq_diff_delta_array = (
        stat.sum_sq_diff_delta_array - (n0 * k / stat.num_pushes) * (mean_new - m0) ** 2
    )
    stat.mean_delta_array = mean_new
    return stat.to_state()


class MeanStdFilter(RLlibMeanStdFilter):
    """Running mean/std observation filter (RLlib's), its merge of the EnvRunners' statistics
    corrected (module docstring)."""

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        fixed = [
            {
                agent: agent_state | {"running_stats": [since_sync(s) for s in agent_state["running_stats"]]}
                for agent, agent_state in state.items()
            }
            for state in states
        ]
        return super().merge_states(fixed)
