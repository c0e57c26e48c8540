#!/usr/bin/env bash
# A separate virtualenv for the peer implementation tristandeleu/pytorch-maml-rl (MAML-TRPO),
# which needs the retired `gym` 0.17 and numpy < 2, so it cannot share the project's packages.
#
#   bash benchmarks/peers/setup_pytorch_maml_rl.sh PEER_CHECKOUT [VENV]
#
# PEER_CHECKOUT: a clone of https://github.com/tristandeleu/pytorch-maml-rl (read, not modified).
# VENV: where the environment goes (default benchmarks/peers/.venv-pytorch-maml-rl, git-ignored).
set -euo pipefail
peer=${1:?usage: setup_pytorch_maml_rl.sh PEER_CHECKOUT [VENV]}
venv=${2:-$(dirname "$0")/.venv-pytorch-maml-rl}
test -f "$peer/maml_rl/metalearners/maml_trpo.py" || { echo "error: $peer is not a pytorch-maml-rl checkout" >&2; exit 2; }
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0            # the CPU build on this machine's disk, as for the project
"$venv/bin/pip" install -q "numpy<2" gym==0.17.3 pyyaml tqdm
"$venv/bin/python" -c "import gym, numpy, torch; print('peer venv:', gym.__version__, numpy.__version__, torch.__version__)"
