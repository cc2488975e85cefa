"""Run by `torchrun` in test_distributed.py: a tiny training run that records what each rank did.

Each rank writes PROBE_DIR/rank{R}.json with the number of training batches it ran and a hash of its final
weights, so the test can check that both ranks trained and ended identical.
"""

import hashlib
import json
import sys
from pathlib import Path

from conftest import tiny_cfg
from fastai.callback.core import Callback

from catdog_fastai.distributed import rank, unwrap
from catdog_fastai.train import train_model


class RankProbe(Callback):
    def __init__(self, probe_dir: Path):
        self.probe_dir, self.batches = probe_dir, 0

    def after_batch(self):
        if self.training:
            self.batches += 1

    def after_fit(self):
        h = hashlib.sha256()
        for k, v in sorted(unwrap(self.learn.model).state_dict().items()):
            h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
        record = dict(rank=rank(), batches=self.batches, weights=h.hexdigest())
        (self.probe_dir / f"rank{rank()}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    out, probe = Path(sys.argv[1]), Path(sys.argv[2])
    train_model(tiny_cfg(out, task="breeds", epochs=1, freeze_epochs=1, pkl=False), cbs=[RankProbe(probe)])
