"""Data parallelism: with 4 (simulated) devices, fit shards each batch and matches one device to 1e-5."""
import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import jax, numpy as np
from dlfunc import data, models, optim
from dlfunc.train import fit, train_step
from dlfunc.train import _fit

shardings = []
real = _fit.train_step
def spy(state, batch):
  spec = getattr(getattr(batch[0], "sharding", None), "spec", None)
  shardings.append(None if spec is None else list(spec))
  return real(state, batch)
_fit.train_step = spy

train = data.load("digits", "train", sys.argv[1])
x, y = np.asarray(train.x[:512]), np.asarray(train.y[:512])
state, history = fit(models.LeNet(features=(4, 8), hidden=16), (x, y), eval_data=(x[:100], y[:100]),
                     optimizer=optim.adam(3e-3), epochs=2, batch_size=32, progress=False)
print(json.dumps({
    "devices": jax.device_count(),
    "loss": [h["loss"] for h in history],
    "val_loss": [h["val_loss"] for h in history],
    "kernel": np.asarray(state.params["Dense_1"]["kernel"]).ravel().tolist(),
    "batch_sharding": shardings[-1],
    "param_sharding": list(getattr(state.params["Dense_1"]["kernel"].sharding, "spec", ["?"])),
}))
"""


def _run(devices: int, data_dir: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  if devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out = subprocess.run([sys.executable, "-c", SCRIPT, data_dir], env=env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_fit_on_four_devices_matches_one_device(tmp_path):
  one = _run(1, str(tmp_path))
  four = _run(4, str(tmp_path))
  assert one["devices"] == 1 and four["devices"] == 4
  assert one["batch_sharding"] is None  # One device: host batches, nothing sharded.
  assert four["batch_sharding"] == ["data"], four["batch_sharding"]  # Split along the batch axis.
  assert four["param_sharding"] == [], four["param_sharding"]  # Replicated.
  for key in ("loss", "val_loss"):
    for a, b in zip(one[key], four[key]):
      assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (key, one[key], four[key])
  worst = max(abs(a - b) for a, b in zip(one["kernel"], four["kernel"]))
  assert worst < 1e-4, worst
