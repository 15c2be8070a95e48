"""Autoencoder, ConvAutoencoder, VAE and the ELBO loss: shapes, encode/decode, the reparameterisation,
vae_loss against a direct formula and Keras' BCE, errors; (slow) training on the embedded digits."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlfunc import losses, models


@pytest.mark.parametrize("model", [models.Autoencoder(16), models.ConvAutoencoder(8), models.VAE(2)],
                         ids=["dense", "conv", "vae"])
def test_encode_decode_shapes(model):
  x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 1))
  v = model.init(jax.random.key(1), x)
  z = model.apply(v, x, method="encode")
  z = z[0] if isinstance(z, tuple) else z
  assert z.shape == (5, model.latent_dim)
  r = model.apply(v, z, method="decode")
  assert r.shape == (5, 8, 8, 1) and bool(jnp.all((r >= 0) & (r <= 1)))
  np.testing.assert_allclose(model.apply(v, x, method="reconstruct"), r, rtol=1e-6, atol=1e-6)
  # flattened inputs come back flattened
  assert model.apply(v, x.reshape(5, 64), method="reconstruct").shape == (5, 64)


def test_linear_autoencoder_is_linear():
  ae = models.Autoencoder(3, hidden=(), activation=None, output_activation=None, data_shape=(6,))
  v = ae.init(jax.random.key(0), jnp.ones((1, 6)))
  a, b = jax.random.normal(jax.random.key(1), (2, 4, 6))
  f = lambda x: ae.apply(v, x)
  np.testing.assert_allclose(f(a + b) - f(b), f(a) - f(jnp.zeros_like(a)), rtol=1e-5, atol=1e-5)
  assert set(v["params"]) == {"enc_0", "dec_0"}


def test_vae_reparameterisation():
  vae = models.VAE(4)
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  v = vae.init(jax.random.key(1), x)
  out_eval = vae.apply(v, x)
  mean, logvar = vae.apply(v, x, method="encode")
  np.testing.assert_allclose(out_eval.mean, mean)
  np.testing.assert_allclose(out_eval.logits, vae.apply(v, mean, method="decode_logits"), rtol=1e-6, atol=1e-6)
  a = vae.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
  b = vae.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
  c = vae.apply(v, x, train=True, rngs={"dropout": jax.random.key(3)})
  np.testing.assert_array_equal(a.logits, b.logits)  # same key, same sample
  assert not np.allclose(a.logits, c.logits)  # different key, different sample
  # gradients reach the encoder's variance head through the sample
  g = jax.grad(lambda p: models.VAE.loss(vae.apply({"params": p}, x, train=True,
                                                   rngs={"dropout": jax.random.key(2)}), x))(v["params"])
  assert float(jnp.abs(g["logvar_head"]["bias"]).sum()) > 0
  # VAEOutput indexes per example (dlfunc.train's per-example evaluation relies on it)
  assert a[1:3].logits.shape == (2, 8, 8, 1) and a[None].mean.shape == (1, 6, 4)


def test_vae_loss_matches_direct_formula_and_keras(x64):
  keras = pytest.importorskip("keras")
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (4, 8, 8, 1))
  x = rng.uniform(size=(4, 8, 8, 1))
  mean, logvar = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
  p = 1 / (1 + np.exp(-logits))
  bce = -(x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(4, -1).sum(1)
  kl = 0.5 * (np.exp(logvar) + mean ** 2 - 1 - logvar).sum(1)
  np.testing.assert_allclose(losses.vae_loss(logits, x, mean, logvar), np.mean(bce + kl), rtol=1e-10)
  np.testing.assert_allclose(losses.vae_loss(logits, x, mean, logvar, beta=0.5), np.mean(bce + 0.5 * kl), rtol=1e-10)
  # the reconstruction term is Keras' binary cross-entropy from logits, summed over pixels
  k_bce = keras.losses.binary_crossentropy(x.reshape(4, -1), logits.reshape(4, -1), from_logits=True)
  np.testing.assert_allclose(bce, 64 * np.asarray(k_bce), rtol=1e-6)
  np.testing.assert_allclose(losses.gaussian_kl(mean, logvar), kl, rtol=1e-10)
  # finite for huge logits
  assert np.isfinite(float(losses.vae_loss(np.full((2, 3), 1e4), np.zeros((2, 3)), np.zeros((2, 1)),
                                           np.zeros((2, 1)))))


def test_bad_inputs_are_one_line_errors():
  for cls in (models.Autoencoder, models.ConvAutoencoder, models.VAE):
    for bad in (0, -3):
      with pytest.raises(ValueError, match=f"latent_dim must be a positive integer, got {bad}") as e:
        cls(bad).init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))
      assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 8, 8, 1\) or \(batch, 64\), got \(2, 28, 28\)"):
    models.Autoencoder(4).init(jax.random.key(0), jnp.ones((2, 28, 28)))
  with pytest.raises(ValueError, match="logits has shape"):
    losses.vae_loss(jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.ones((2, 1)), jnp.ones((2, 1)))


# --- training on the embedded digits (dlfunc.train.fit) -------------------------------------------------

@pytest.fixture(scope="module")
def digits():
  from dlfunc import data
  return data.load("digits", "train").x, data.load("digits", "test").x


def _fit(model, x, epochs, lr, loss_fn=losses.mse, batch_size=32):
  from dlfunc.train import fit
  steps = epochs * (len(x) // batch_size)
  opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
  state, _ = fit(model, (x, x), optimizer=opt, epochs=epochs, batch_size=batch_size, loss_fn=loss_fn, seed=0,
                 progress=False)
  return state.variables


@pytest.mark.slow
def test_dense_autoencoder_latent16_test_mse(digits):
  train, test = digits
  ae = models.Autoencoder(16, hidden=(128,))
  v = _fit(ae, train, epochs=60, lr=3e-3)
  mse = float(losses.mse(ae.apply(v, test), test))
  assert mse <= 0.013, f"test reconstruction MSE {mse:.4f} > 0.013"


@pytest.mark.slow
def test_linear_autoencoder_matches_pca(digits):
  from dlfunc.anomaly import pca_scores
  train, test = digits
  rank = 8
  ae = models.Autoencoder(rank, hidden=(), activation=None, output_activation=None)
  v = _fit(ae, train, epochs=60, lr=1e-2)
  ae_mse = float(losses.mse(ae.apply(v, test), test))
  pca_mse = float(np.mean(pca_scores(train, test, rank)))
  assert ae_mse <= 1.05 * pca_mse, f"linear AE {ae_mse:.5f} vs PCA {pca_mse:.5f}"


@pytest.mark.slow
def test_conv_autoencoder_and_vae_learn(digits):
  train, test = digits
  cae = models.ConvAutoencoder(16)
  v = _fit(cae, train, epochs=10, lr=3e-3, batch_size=64)
  baseline = float(np.mean((test - train.mean(0)) ** 2))  # predicting the mean image
  cae_mse = float(losses.mse(cae.apply(v, test), test))
  assert cae_mse < 0.5 * baseline, f"ConvAutoencoder {cae_mse:.4f} vs mean-image {baseline:.4f}"
  vae = models.VAE(8)
  v = _fit(vae, train, epochs=20, lr=3e-3, loss_fn=models.VAE.loss)
  vae_mse = float(losses.mse(vae.apply(v, test, method="reconstruct"), test))
  # A VAE's reconstructions are blurrier (the KL term); measured 0.030 against the mean image's 0.074.
  assert vae_mse < 0.6 * baseline, f"VAE {vae_mse:.4f} vs mean-image {baseline:.4f}"
  print(f"mean-image {baseline:.4f}, ConvAutoencoder {cae_mse:.4f}, VAE(8) {vae_mse:.4f}")


@pytest.mark.slow
def test_cli_autoencoder_writes_reconstruction_and_latent_pngs(capsys, tmp_path):
  from dlfunc import cli
  code = cli.main(["train", "--model", "vae", "--dataset", "digits", "--epochs", "1", "--workdir", str(tmp_path),
                   "--no-progress"])
  out, err = capsys.readouterr()
  assert code == 0, err
  assert "test loss" in out
  for name in ("reconstructions.png", "latent.png"):
    assert (tmp_path / name).stat().st_size > 1000, name
