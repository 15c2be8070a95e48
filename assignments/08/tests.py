"""Graded tests for assignment 08: autoencoder, anomaly scores, threshold, PCA baseline, training.

References: dlfunc's ``Autoencoder(16, hidden=(64,))`` (its ``encode``/``decode``
methods), ``dlfunc.losses.mse``, ``numpy.percentile``, and the PCA baseline of
``dlfunc.anomaly``; all run here in the trusted process. The training check
judges the returned parameters with the reference model on held-out data, and
its AUROC bar is computed from PCA in the same run (PCA is deterministic).
See autograder/AUTHORING.md.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import dlfunc.data as data
import dlfunc.models as models
from dlfunc import anomaly
from dlfunc.losses import mse
from autograder import checks as C
from autograder import hidden, points

FUNCTIONS = ("encode", "decode", "reconstruction_loss", "anomaly_scores", "threshold", "pca_reconstruct",
             "ae_train_step")
FORBIDDEN = {f: ("sklearn", "flax", "torch", "keras") for f in FUNCTIONS}
TIMEOUT = 30.0
TOTAL_TIMEOUT = 150.0

LATENT, HIDDEN = 16, (64,)
AE = models.Autoencoder(LATENT, hidden=HIDDEN)
TOL = dict(rtol=1e-5, atol=1e-5)


@functools.lru_cache(maxsize=None)
def ref_params(seed):
  v = AE.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1), jnp.float32))
  return jax.tree_util.tree_map(np.asarray, v["params"])


def params64(seed):
  return jax.tree_util.tree_map(lambda a: a.astype(np.float64), ref_params(seed))


def ref_encode(params, x):
  return AE.apply({"params": params}, x, method="encode")


def ref_decode(params, z):
  return AE.apply({"params": params}, z, method="decode")


def ref_reconstruct(params, x):
  return AE.apply({"params": params}, x, method="reconstruct")


def ref_loss(params, x):
  return mse(ref_reconstruct(params, x), x)


def ref_scores(params, x):
  return ((ref_reconstruct(params, x) - x) ** 2).reshape(x.shape[0], -1).mean(-1)


def ref_pca_reconstruct(x_train, x, rank):
  a = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
  b = np.asarray(x, np.float64).reshape(len(x), -1)
  mu = a.mean(0)
  _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
  v = vt[:rank].T
  return ((b - mu) @ v @ v.T + mu).reshape(np.shape(x)).astype(np.result_type(x))


def digits(n=None, split="test"):
  x = np.asarray(data.load("digits", split).x)
  return x if n is None else x[:n]

# ---------------------------------------------------------------- encode / decode


@points(2)
def test_encode_values(sub):
  """encode: (10, 8, 8, 1) digits -> (10, 16) codes equal to dlfunc's Autoencoder.encode"""
  got = C.matches(sub, "encode", ref_encode, ref_params(0), digits(10), **TOL)
  C.shape_dtype(got, (10, LATENT), np.float32, "encode(params, x (10, 8, 8, 1))")


@points(1)
@hidden
def test_encode_grad(sub):
  """encode: gradients with respect to params and x match (float64)"""
  C.grad_matches(sub, "encode", ref_encode, params64(1), digits(4).astype(np.float64), argnums=(0, 1))


@points(2)
def test_decode_values(sub):
  """decode: (6, 16) codes -> (6, 8, 8, 1) images in (0, 1) equal to dlfunc's Autoencoder.decode"""
  got = C.matches(sub, "decode", ref_decode, ref_params(2), C.normal(3, (6, LATENT)), **TOL)
  C.shape_dtype(got, (6, 8, 8, 1), np.float32, "decode(params, z (6, 16))")


@points(1)
@hidden
def test_decode_grad(sub):
  """decode: gradients with respect to params and z match (float64)"""
  C.grad_matches(sub, "decode", ref_decode, params64(4), C.normal(5, (3, LATENT), np.float64), argnums=(0, 1))

# ---------------------------------------------------------------- loss and scores


@points(2)
def test_reconstruction_loss_value(sub):
  """reconstruction_loss: the scalar MSE over all pixels of 20 digits"""
  got = C.matches(sub, "reconstruction_loss", ref_loss, ref_params(6), digits(20), **TOL)
  C.shape_dtype(got, (), np.float32, "reconstruction_loss(params, x)")


@points(1)
@hidden
def test_reconstruction_loss_grad(sub):
  """reconstruction_loss: gradient with respect to params matches (float64)"""
  C.grad_matches(sub, "reconstruction_loss", ref_loss, params64(7), digits(5).astype(np.float64))


@points(2)
def test_anomaly_scores_values(sub):
  """anomaly_scores: one MSE per example, shape (N,), for 25 digits"""
  got = C.matches(sub, "anomaly_scores", ref_scores, ref_params(8), digits(25), **TOL)
  C.shape_dtype(got, (25,), np.float32, "anomaly_scores(params, x (25, 8, 8, 1))")


@points(1)
def test_anomaly_scores_jit(sub):
  """anomaly_scores: same under jax.jit, and the mean of the scores is the reconstruction loss"""
  got = C.jit_matches(sub, "anomaly_scores", ref_scores, ref_params(9), digits(12), **TOL)
  C.allclose(np.float32(np.mean(got)), np.asarray(ref_loss(ref_params(9), digits(12))),
             "mean of anomaly_scores(params, x) vs the reconstruction loss", **TOL)

# ---------------------------------------------------------------- threshold


@points(1)
def test_threshold_values(sub):
  """threshold: equals np.percentile (linear interpolation) at the 95th percentile of 101 scores"""
  s = np.abs(C.normal(10, (101,)))
  C.matches(sub, "threshold", lambda a, p: np.float32(np.percentile(a, p)), s, 95.0, **TOL)


@points(1)
@hidden
def test_threshold_interpolates(sub):
  """threshold: interpolates between order statistics (percentiles 0, 37.5, 90 and 100 of 10 scores)"""
  s = C.normal(11, (10,))
  return C.each(*[lambda p=p: C.matches(sub, "threshold", lambda a, q: np.float32(np.percentile(a, q)), s, p, **TOL)
                  for p in (0.0, 37.5, 90.0, 100.0)])

# ---------------------------------------------------------------- PCA


PCA_TOL = dict(rtol=1e-3, atol=2e-4)   # float32 SVDs from different LAPACK paths; a wrong formula is off by >1e-2


@points(2)
def test_pca_reconstruct_values(sub):
  """pca_reconstruct: rank-16 reconstruction of 8 test digits from the training digits"""
  got = C.matches(sub, "pca_reconstruct", ref_pca_reconstruct, digits(None, "train"), digits(8), 16, **PCA_TOL)
  C.shape_dtype(got, (8, 8, 8, 1), np.float32, "pca_reconstruct(x_train, x (8, 8, 8, 1), 16)")


@points(1)
def test_pca_reconstruct_full_rank(sub):
  """pca_reconstruct: with every component kept, x comes back unchanged"""
  C.matches(sub, "pca_reconstruct", lambda a, b, r: b, C.normal(12, (30, 5)), C.normal(13, (4, 5)), 5, **PCA_TOL)


@points(1)
@hidden
def test_pca_reconstruct_centering(sub):
  """pca_reconstruct: rank 1 on data with a large offset (the mean must be removed first)"""
  rng = np.random.default_rng(14)
  x_train = (rng.standard_normal((50, 3)) * np.array([3.0, 0.5, 0.1]) + 10.0).astype(np.float32)
  x = (rng.standard_normal((5, 3)) + 10.0).astype(np.float32)
  C.matches(sub, "pca_reconstruct", ref_pca_reconstruct, x_train, x, 1, **PCA_TOL)

# ---------------------------------------------------------------- training


def ref_train_step(params, x, lr):
  grads = jax.grad(ref_loss)(params, x)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)


@points(2)
def test_ae_train_step_one_step(sub):
  """ae_train_step: one step with lr 4.0 equals params - 4.0 * grad of the reconstruction loss"""
  C.matches(sub, "ae_train_step", ref_train_step, ref_params(15), digits(32, "train"), 4.0, rtol=1e-4, atol=1e-5)


HOLDOUT, EPOCHS, BATCH, LR, MSE_BAR, AUROC_MARGIN = 9, 20, 32, 4.0, 0.025, 0.1


@points(4, timeout=90)
@hidden
def test_ae_train_step_detects_nines(sub):
  """ae_train_step: trained without 9s, test MSE < 0.025 and AUROC for 9s within 0.1 of PCA's"""
  split = anomaly.holdout_split("digits", holdout=HOLDOUT)
  batches = [np.asarray(xb) for e in range(EPOCHS)
             for xb, _ in data.batches(split.x_train, split.y_train, BATCH, seed=0, epoch=e)]
  p = sub.iterate("ae_train_step", ref_params(16), batches, LR)
  C.finite(p, "the parameters after training")
  scores = np.asarray(C.use_returned(ref_scores, p, split.x_test,
                                     what="ae_train_step returned parameters the autoencoder cannot use"))
  normal_mse = float(scores[~split.is_anomaly].mean())
  auc = anomaly.auroc(scores, split.is_anomaly)
  pca_auc = anomaly.auroc(anomaly.pca_scores(split.x_train, split.x_test, LATENT), split.is_anomaly)
  # Measured with dlfunc's reference: MSE 0.016, AUROC 0.77-0.80 against PCA's 0.777 (seeds 0, 1).
  return C.each(
      lambda: C.check(normal_mse < MSE_BAR, f"ae_train_step: test MSE on normal digits {normal_mse:.4f} >= {MSE_BAR} "
                      f"after {len(batches)} steps (lr {LR}); is the loss the mean over pixels and the update -lr*grad?"),
      lambda: C.check(auc >= pca_auc - AUROC_MARGIN, f"ae_train_step: AUROC for held-out 9s {auc:.3f} is more than "
                      f"{AUROC_MARGIN} below PCA's {pca_auc:.3f} in this run."))
