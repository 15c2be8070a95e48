"""Orbax checkpoints in fit: exact resume, corrupt/partial checkpoints skipped, NaN keeps the last good one."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import data, models, optim
from dlfunc.train import Checkpointer, TrainingDiverged, create_train_state, fit, tree_checksum

MLP = models.MLP(hidden=(32,))
ADAM = optim.adam(3e-3)
N, BS = 256, 32  # 8 steps per epoch.


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  train = data.load("digits", "train", str(tmp_path_factory.mktemp("tfds")))
  return np.asarray(train.x[:N]), np.asarray(train.y[:N])


def _run(xy, workdir, epochs, **kw):
  return fit(MLP, xy, optimizer=ADAM, epochs=epochs, batch_size=BS, workdir=workdir, progress=False,
             log=kw.pop("log", lambda m: None), **kw)


def _same(a, b):
  leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda u, v: np.array_equal(np.asarray(u), np.asarray(v)), a, b))
  return all(leaves)


def test_resume_ends_bit_identical_to_an_uninterrupted_run(small, tmp_path):
  full, hist_full = _run(small, tmp_path / "full", 3)
  _run(small, tmp_path / "split", 2)
  messages = []
  resumed, hist = _run(small, tmp_path / "split", 3, resume=True, log=messages.append)
  assert any("resuming from the checkpoint of epoch 2" in m for m in messages)
  assert [h["epoch"] for h in hist] == [1, 2, 3]
  assert [h["loss"] for h in hist] == [h["loss"] for h in hist_full]
  assert _same((full.params, full.opt_state, full.step, full.rng), (resumed.params, resumed.opt_state,
                                                                   resumed.step, resumed.rng))
  assert os.path.exists(tmp_path / "full" / "training_curve.png")


def test_existing_checkpoints_without_resume_is_an_error(small, tmp_path):
  _run(small, tmp_path, 1)
  with pytest.raises(ValueError, match="already holds checkpoints.*resume=True"):
    _run(small, tmp_path, 2)


def _corrupt(step_dir):
  """Overwrites every array-data file of a finished checkpoint with garbage of the same size."""
  hit = 0
  for path in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
    if os.path.isfile(path):
      size = os.path.getsize(path)
      with open(path, "wb") as f:
        f.write(b"\x5a" * size)
      hit += 1
  assert hit, f"found no data files to corrupt under {step_dir}"


# When a restore of deliberately corrupted files fails, tensorstore's remaining reads
# finish after Orbax's asyncio loop has closed; Python reports those as "unraisable"
# (noise from a failed read, not a fault of the skip logic this test checks).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_and_partial_checkpoints_are_skipped_with_a_message(small, tmp_path):
  _run(small, tmp_path, 2)
  ckpt_dir = tmp_path / "checkpoints"
  _corrupt(str(ckpt_dir / "2"))
  os.makedirs(ckpt_dir / "3.orbax-checkpoint-tmp-1234" / "state")  # A save killed half-way.
  messages = []
  target = create_train_state(MLP, ADAM, small[0][:BS], jax.random.PRNGKey(0))
  ck = Checkpointer(tmp_path)
  try:
    assert ck.epochs() == [1, 2]
    state, meta = ck.restore_latest(target, log=messages.append)
  finally:
    ck.close()
  assert meta["epoch"] == 1
  assert len(messages) == 1 and "epoch 2" in messages[0] and "corrupt or partial" in messages[0]
  assert tree_checksum(state) == meta["checksum"]
  # fit(resume=True) takes the same path: continues from epoch 1.
  log = []
  _, hist = _run(small, tmp_path, 3, resume=True, log=log.append)
  assert [h["epoch"] for h in hist] == [1, 2, 3]
  assert any("skipping" in m for m in log) and any("epoch 1" in m for m in log if "resuming" in m)


def test_nan_loss_stops_at_the_step_and_keeps_the_last_good_checkpoint(small, tmp_path):
  x, y = small
  # tanh propagates NaN into the loss (dlfunc.nn.relu maps NaN to 0, hiding it until the epoch-end check).
  model = models.MLP(hidden=(32,), activation=jax.numpy.tanh)
  run = lambda xy, epochs, **kw: fit(model, xy, optimizer=ADAM, epochs=epochs, batch_size=BS, workdir=tmp_path,
                                     progress=False, log=lambda m: None, **kw)
  run((x, y), 1)
  # Poison the example that epoch 2 (epoch index 1) visits in its 4th batch.
  order = data.epoch_permutation(N, seed=0, epoch=1)
  bad = x.copy()
  bad[order[3 * BS]] = np.nan
  with pytest.raises(TrainingDiverged) as e:
    run((bad, y), 3, resume=True)
  msg = str(e.value)
  steps_per_epoch = N // BS
  assert "\n" not in msg
  assert f"NaN/inf at step {steps_per_epoch + 4} (epoch 2)" in msg and "last good checkpoint (epoch 1)" in msg
  ck = Checkpointer(tmp_path)
  try:
    assert ck.epochs() == [1]
    target = create_train_state(model, ADAM, x[:BS], jax.random.PRNGKey(0))
    state, _ = ck.restore_latest(target)
  finally:
    ck.close()
  assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree_util.tree_leaves(state.params))


def _nan_hiding_relu(x):
  # Maps NaN to 0 (unlike dlfunc.nn.relu), so a NaN input poisons the weights through the
  # gradient without ever making the loss NaN.
  return jnp.where(x > 0, x, jnp.zeros((), x.dtype))


def test_nan_parameters_are_caught_before_they_are_checkpointed(small, tmp_path):
  """A model that hides NaN from its loss still never checkpoints NaN weights: the save-time check stops it."""
  x, y = small
  model = models.MLP(hidden=(16,), activation=_nan_hiding_relu)
  run = lambda xy, epochs, **kw: fit(model, xy, optimizer=ADAM, epochs=epochs, batch_size=BS,  # noqa: E731
                                     workdir=tmp_path, progress=False, log=lambda m: None, **kw)
  run((x, y), 1)
  bad = x.copy()
  bad[data.epoch_permutation(N, seed=0, epoch=1)[0]] = np.nan
  with pytest.raises(TrainingDiverged, match=r"parameters became NaN/inf during epoch 2 \(steps 9-16\).*"
                                              r"last good checkpoint \(epoch 1\)"):
    run((bad, y), 3, resume=True)
  ck = Checkpointer(tmp_path)
  try:
    assert ck.epochs() == [1]
  finally:
    ck.close()


RESUME_OTHER_WIDTH = r"""
import sys
import numpy as np
from dlfunc import models, optim
from dlfunc.train import fit
x, y = np.load(sys.argv[1] + "/x.npy"), np.load(sys.argv[1] + "/y.npy")
try:
  fit(models.MLP(hidden=(16,)), (x, y), optimizer=optim.adam(3e-3), epochs=3, batch_size=32,
      workdir=sys.argv[1] + "/run", resume=True, progress=False)
except ValueError as e:
  print("ValueError:", e)
"""


def _files(root):
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def test_resume_with_another_width_raises_and_leaves_the_run_untouched(small, tmp_path):
  """A 16-wide model resumed on a 32-wide run: ValueError naming both shapes, no file touched, no traceback."""
  import subprocess
  import sys
  _run(small, tmp_path / "run", 2)
  np.save(tmp_path / "x.npy", small[0])
  np.save(tmp_path / "y.npy", small[1])
  before = _files(tmp_path / "run")
  out = subprocess.run([sys.executable, "-c", RESUME_OTHER_WIDTH, str(tmp_path)], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-3000:]
  assert ("ValueError: the checkpoint of epoch 2 in" in out.stdout and "does not fit this model: "
          "params/Dense_0/bias is (32,) float32 in the checkpoint but (16,) float32 in the model" in out.stdout), out
  assert "Traceback" not in out.stderr and "corrupt" not in out.stderr, out.stderr[-3000:]
  after = _files(tmp_path / "run")
  assert sorted(after) == sorted(before) and all(after[k] == before[k] for k in before)


def test_first_difference_names_structure_shape_and_dtype():
  from dlfunc.train._checkpoint import first_difference, tree_signature
  a = tree_signature({"params": {"b": np.zeros(3, np.float32), "w": np.zeros((2, 3), np.float32)}})
  assert first_difference(a, a) is None
  dtype = tree_signature({"params": {"b": np.zeros(3, np.float32), "w": np.zeros((2, 3), np.float16)}})
  assert first_difference(a, dtype) == "params/w is (2, 3) float32 in the checkpoint but (2, 3) float16 in the model"
  more = tree_signature({"params": {"b": np.zeros(3, np.float32), "v": np.zeros(1), "w": np.zeros((2, 3))}})
  assert first_difference(a, more) == "params/v ((1,) float64) is in the model but not in the checkpoint"
  assert first_difference(more, a) == "params/v ((1,) float64) is in the checkpoint but not in the model"
  assert first_difference(a, a[:1]) == "params/w ((2, 3) float32) is in the checkpoint but not in the model"
