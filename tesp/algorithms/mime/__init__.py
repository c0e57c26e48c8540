"""MIME: MAML with VIME's information gain mixed into the reward by a meta-learned weight."""

from tesp.algorithms.mime.mime import MIME, MIMEConfig, summary_line
from tesp.method import Method, Variant

METHODS = (Method("mime", MIME, summary_line),)

# The MIME seed's spellings, as switches on --alg maml.
_NOISE = "MAML + noise: Gaussian noise on the standardised reward (= --alg mime, no VIME)"
_VIME = "MAML + expl: VIME's information gain mixed into the reward, fixed weight (--alg mime)"
_ETA = "with --use-vime: meta-learn the mixing weight (= --alg mime)"
VARIANTS = (
    Variant(
        "maml",
        {"add-noise": _NOISE},
        "mime",
        {"use_vime": False, "adapt_eta": False, "reward_noise_std": 0.1},
    ),
    Variant("maml", {"use-vime": _VIME}, "mime", {"use_vime": True, "adapt_eta": False}),
    Variant("maml", {"use-vime": _VIME, "adapt-eta": _ETA}, "mime", {"use_vime": True, "adapt_eta": True}),
)

__all__ = ["METHODS", "VARIANTS", "MIME", "MIMEConfig"]
