"""Assignment 08 (autoencoders): the graded tests catch typical mistakes and name the function.

The validate/hostile runs for every assignment live in the autograder tests;
here the reference solution runs in-process (``LocalSubmission``) with one
function swapped for a typical mistake, and the verdict and feedback are checked.
"""
import jax.numpy as jnp
import numpy as np
import pytest

from _assignment_helpers import Reference

R = Reference("08")


@pytest.mark.parametrize("key", ["test_encode_values", "test_decode_values", "test_anomaly_scores_values",
                                 "test_threshold_interpolates", "test_pca_reconstruct_values",
                                 "test_pca_reconstruct_centering", "test_ae_train_step_one_step"])
def test_reference_passes(ref_ns, key):
  assert R.run(ref_ns, key)[:2] == (1.0, "passed")


def test_pca_without_centering_fails(ref_ns):
  ns = dict(ref_ns)

  def uncentered(x_train, x, rank):
    a, b = jnp.asarray(x_train).reshape(len(x_train), -1), jnp.asarray(x).reshape(len(x), -1)
    v = jnp.linalg.svd(a, full_matrices=False)[2][:rank].T
    return (b @ v @ v.T).reshape(x.shape)
  ns["pca_reconstruct"] = uncentered
  frac, status, msg = R.run(ns, "test_pca_reconstruct_centering")
  assert status == "failed" and msg.startswith("pca_reconstruct(")


def test_nearest_rank_threshold_loses_points(ref_ns):
  ns = dict(ref_ns)
  ns["threshold"] = lambda s, p: jnp.sort(jnp.asarray(s))[int(round(p / 100 * (len(s) - 1)))]
  frac, status, _ = R.run(ns, "test_threshold_interpolates")
  assert 0 < frac < 1 and status == "partial"


def test_scores_summed_instead_of_averaged_fail(ref_ns):
  ns = dict(ref_ns)

  def summed(params, x):
    err = (ref_ns["decode"](params, ref_ns["encode"](params, x)) - x) ** 2
    return err.reshape(x.shape[0], -1).sum(axis=1)
  ns["anomaly_scores"] = summed
  assert R.run(ns, "test_anomaly_scores_values")[1] == "failed"


def test_auroc_bar_uses_pca_from_the_same_run():
  m = R.assignment.module
  from dlfunc import anomaly
  split = anomaly.holdout_split("digits", holdout=m.HOLDOUT)
  pca = anomaly.auroc(anomaly.pca_scores(split.x_train, split.x_test, m.LATENT), split.is_anomaly)
  assert 0.7 < pca < 0.85 and pca - m.AUROC_MARGIN > 0.55   # the bar stays well above chance (0.5)
  assert np.isclose(pca, anomaly.auroc(anomaly.pca_scores(split.x_train, split.x_test, m.LATENT), split.is_anomaly))
