"""Record the Keras and PyTorch models whose weights assignment 10 ports to dlfunc.

Run once, from the repository root (the output is committed):

    KERAS_BACKEND=jax .venv/bin/python assignments/10/record_fixtures.py

Trains the course's seed models for a few epochs on the embedded digits (train
split) in their own frameworks and saves, in ``fixtures.npz`` (float32):

* ``keras_mlp_w{i}``: ``model.get_weights()`` of the Keras seed MLP
  ``Sequential([Input((8, 8, 1)), Flatten(), Dense(128, "relu"), Dense(10)])``;
* ``torch_mlp.<name>`` / ``torch_cnn.<name>``: the ``state_dict()`` of the
  PyTorch seed MLP (``fc1 = Linear(64, 128)``, ``fc2 = Linear(128, 10)``) and
  seed CNN (``conv1 = Conv2d(1, 32, 3)``, ``fc1 = Linear(32 * 6 * 6, 10)``,
  ReLU in ``forward``, ``x.flatten(1)`` on NCHW);
* ``x_nhwc`` (the first 32 test digits, ``(32, 8, 8, 1)``) and ``x_nchw`` (the
  same images as PyTorch reads them, ``(32, 1, 8, 8)``);
* ``keras_mlp_logits``, ``torch_mlp_logits``, ``torch_cnn_logits``: each
  framework's own logits for those images (``(32, 10)``), and ``*_accuracy``,
  each model's accuracy on the whole test split.

Versions used for the committed file: Keras 3 (JAX backend) and torch 2.x, CPU.
"""
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent / "fixtures.npz"
EPOCHS = 5


def digits():
  from dlfunc.data import load
  return load("digits", "train"), load("digits", "test")


def keras_mlp(train, test, x):
  import keras
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
                            keras.layers.Dense(10)])
  model.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(np.asarray(train.x), np.asarray(train.y), epochs=EPOCHS, batch_size=32, verbose=0, shuffle=True)
  logits = np.asarray(model.predict(x, verbose=0))
  acc = float(np.mean(np.asarray(model.predict(np.asarray(test.x), verbose=0)).argmax(-1) == test.y))
  out = {f"keras_mlp_w{i}": w for i, w in enumerate(model.get_weights())}
  return dict(out, keras_mlp_logits=logits, keras_mlp_accuracy=np.float32(acc))


def torch_models(train, test, x_nchw):
  import torch
  from torch import nn
  torch.manual_seed(0)

  class MLP(nn.Module):
    def __init__(self):
      super().__init__()
      self.fc1, self.fc2 = nn.Linear(64, 128), nn.Linear(128, 10)

    def forward(self, x):
      return self.fc2(torch.relu(self.fc1(x.flatten(1))))

  class CNN(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
      self.fc1 = nn.Linear(32 * 6 * 6, 10)

    def forward(self, x):
      return self.fc1(torch.relu(self.conv1(x)).flatten(1))

  xs = torch.from_numpy(np.array(np.asarray(train.x).transpose(0, 3, 1, 2)))
  ys = torch.from_numpy(np.asarray(train.y).astype(np.int64))
  xt = torch.from_numpy(np.array(np.asarray(test.x).transpose(0, 3, 1, 2)))
  out = {}
  for name, model in (("torch_mlp", MLP()), ("torch_cnn", CNN())):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
      for idx in torch.randperm(len(xs), generator=g).split(32):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
        opt.step()
    with torch.no_grad():
      out[f"{name}_logits"] = model(torch.from_numpy(x_nchw)).numpy()
      out[f"{name}_accuracy"] = np.float32((model(xt).argmax(-1).numpy() == test.y).mean())
    out.update({f"{name}.{k}": v.detach().numpy() for k, v in model.state_dict().items()})
  return out


def main():
  train, test = digits()
  x = np.array(test.x[:32], np.float32)
  x_nchw = np.array(x.transpose(0, 3, 1, 2))
  arrays = {"x_nhwc": x, "x_nchw": x_nchw}
  arrays.update(keras_mlp(train, test, x))
  arrays.update(torch_models(train, test, x_nchw))
  arrays = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
  np.savez_compressed(OUT, **arrays)
  print(f"wrote {len(arrays)} arrays to {OUT} ({OUT.stat().st_size} bytes)")
  for k in sorted(arrays):
    if k.endswith("accuracy"):
      print(k, float(arrays[k]))


if __name__ == "__main__":
  main()
