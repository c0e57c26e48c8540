"""Export a policy's checkpoint (``--alg ppo``) as a small folder that runs it.

    python scripts/export_policy.py RUN_OR_CHECKPOINT DEST

``RUN_OR_CHECKPOINT``: a checkpoint, or a trial or experiment folder (its newest checkpoint).
``DEST`` (a new folder) holds the module, its observation filter and the algorithm's config
(~150 KB for a walker skill): ``main_test.py DEST`` runs it and ``--primitives NAME=DEST`` loads
it, but it cannot be resumed. The walker skills in ``skills/`` were exported this way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tesp.checkpoints import find_checkpoint  # noqa: E402
from tesp.checkpoints.policies import export_policy  # noqa: E402
from tesp.config_overrides import ConfigError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint, or a trial or experiment folder")
    parser.add_argument("dest", help="a new folder")
    args = parser.parse_args(argv)
    try:
        record = export_policy(find_checkpoint(args.checkpoint), Path(args.dest))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
