"""ConvNet encoder of Sec. 3.3: shapes, the paper's ~220k parameters, per-sample layer norm."""

import gin
import numpy as np
import pytest
import tensorflow as tf

import keras
from mi_tf.encoders import ConvNet
from mi_tf.encoders.convnet import ChannelLayerNorm


@pytest.mark.parametrize('shape, params', [((14, 28, 1), 219_748), ((16, 32, 3), 222_948)])
def test_output_shape_and_parameter_count(shape, params):
  model = ConvNet()
  out = model(tf.random.uniform((5,) + shape))
  assert out.shape == (5, 100)
  # 5*5*C*64 + 64, 5*5*64*128 + 128, per-channel scale and bias 2*128, 128*100 + 100.
  assert model.count_params() == params
  assert abs(model.count_params() - 220_000) / 220_000 < 0.02  # Paper: about 220k.


def test_intermediate_shapes_with_same_padding():
  model = ConvNet()
  x = tf.zeros((2, 14, 28, 1))
  h1 = model.conv1(x)
  h2 = model.conv2(h1)
  assert h1.shape == (2, 7, 14, 64) and h2.shape == (2, 4, 7, 128)


def test_layer_norm_has_per_channel_scale_and_bias():
  norm = ChannelLayerNorm()
  norm(tf.zeros((1, 4, 7, 128)))
  assert [tuple(w.shape) for w in norm.trainable_weights] == [(128,), (128,)]
  # Keras's LayerNormalization over the same axes has one scale and bias per ELEMENT.
  keras_norm = keras.layers.LayerNormalization(axis=[1, 2, 3])
  keras_norm(tf.zeros((1, 4, 7, 128)))
  assert keras_norm.count_params() == 2 * 4 * 7 * 128


def test_layer_norm_statistics_are_per_sample():
  rng = np.random.default_rng(0)
  # Samples with very different offsets and scales.
  x = rng.normal(size=(6, 4, 7, 128)) * np.arange(1, 7)[:, None, None, None] * 3.0
  x += np.arange(6)[:, None, None, None] * 10.0
  x = tf.constant(x, tf.float32)
  norm = ChannelLayerNorm()
  y = norm(x).numpy()
  np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(axis=(1, 2, 3)), 1.0, atol=1e-4)
  # Each sample is normalised by its own statistics only: changing the others leaves it alone.
  x2 = tf.concat([x[:1], x[1:] * 5.0 - 2.0], axis=0)
  np.testing.assert_allclose(norm(x2).numpy()[0], y[0], atol=1e-5)
  # The per-channel affine map: channel c is scaled by scale[c] and shifted by bias[c].
  scale = np.linspace(0.5, 2.0, 128).astype(np.float32)
  bias = np.linspace(-1.0, 1.0, 128).astype(np.float32)
  norm.scale.assign(scale)
  norm.bias.assign(bias)
  np.testing.assert_allclose(norm(x).numpy(), y * scale + bias, rtol=1e-5, atol=1e-5)


def test_layer_norm_inside_the_encoder_normalises_each_sample():
  model = ConvNet()
  x = tf.random.uniform((4, 14, 28, 1)) * tf.constant([1.0, 2.0, 5.0, 10.0])[:, None, None, None]
  h = model.norm(model.conv2(model.conv1(x))).numpy()
  np.testing.assert_allclose(h.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(h.std(axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_every_variable_round_trips_through_a_checkpoint(tmp_path):
  model = ConvNet()
  model(tf.zeros((1, 14, 28, 1)))
  for v in model.variables:
    v.assign(tf.random.normal(v.shape))
  path = tf.train.Checkpoint(g1=model).save(str(tmp_path / 'ckpt'))
  restored = ConvNet()
  restored(tf.zeros((1, 14, 28, 1)))
  tf.train.Checkpoint(g1=restored).restore(path).assert_consumed()
  assert len(restored.variables) == 8
  for a, b in zip(model.variables, restored.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_gin_configures_the_convnet():
  gin.parse_config(['ConvNet.channels = 8', 'ConvNet.output_dim = 5'])
  model = ConvNet()
  assert model(tf.zeros((2, 14, 28, 1))).shape == (2, 5)
  assert model.conv2.filters == 16
