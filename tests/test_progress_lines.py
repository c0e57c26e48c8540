"""The progress lines say what matters per method: stage returns and success rates, MIME's eta and
information gain, when MLSH's first value comes, an ETA; steps written short at every scale."""

from __future__ import annotations

from tesp.algorithms.mime.mime import summary_line as mime_line
from tesp.algorithms.mlsh.mlsh import summary_line as mlsh_line
from tesp.commands.progress import format_duration
from tesp.meta.rollout import format_steps
from tesp.meta.rollout import summary_line as meta_line


def test_steps_are_short_and_never_zero_thousands():
    assert [format_steps(n) for n in (0, 850, 3200, 77_000, 1_500_000)] == ["0", "850", "3.2k", "77k", "1.5M"]


def test_a_meta_learners_line_has_its_stages_success_rates_and_validation():
    result = {
        "meta": {
            "return_stage_0": -3.0,
            "return_stage_1": -1.0,
            "success_stage_0": 0.1,
            "success_stage_1": 0.4,
        },
        "validation": {"D''": {"return_stage_0": -5.0, "return_stage_1": -4.0}},
    }
    first, second = meta_line(result).splitlines()
    assert first == "return -3.00 -> -1.00 | success 0.10 -> 0.40 | 0 steps"
    assert second == "  validation D'' | return -5.00 -> -4.00"
    assert "success" not in meta_line({"meta": {"return_stage_0": 1.0}})  # envs without a success


def test_mimes_line_adds_eta_and_the_information_gain_and_says_before_the_mix():
    meta = {"return_stage_0": 0.0, "env_steps": 4000, "eta": 0.5, "information_gain": 0.0012}
    assert mime_line({"meta": meta | {"mixing_on": 0.0}}).endswith(
        "| eta 0.500, info gain 0.0012 (not mixed in yet)"
    )
    assert mime_line({"meta": meta | {"mixing_on": 1.0}}).endswith("| eta 0.500, info gain 0.0012")


def test_mlshs_line_says_when_its_first_value_comes_then_shows_it():
    early = {"mlsh": {"return": -2.0, "iters_to_first_value": 12, "joint_slots": 0, "num_slots": 2}}
    assert "after warm-up: first value in 12 iterations (0 of 2 tasks in the joint phase)" in mlsh_line(early)
    later = {"mlsh": {"return": -2.0, "return_post_warmup": -1.5, "return_post_joint": -1.0, "tasks_done": 3}}
    line = mlsh_line(
        later | {"mlsh": later["mlsh"] | {"iters_to_first_value": 0, "joint_slots": 1, "num_slots": 2}}
    )
    assert "after warm-up -1.50, after joint -1.00" in line and "nan" not in line


def test_durations_read_as_a_person_writes_them():
    assert [format_duration(s) for s in (45, 725, 12000)] == ["45s", "12m05s", "3h20m"]
