"""The ConvNet encoder of Sec. 3.3 (Fig. 4a, b) and App. G, with the Colab's layer norm.

On an MNIST half [B, 14, 28, 1]: conv 5x5 stride 2, 64 channels, ReLU -> [B, 7, 14, 64];
conv 5x5 stride 2, 128 channels, ReLU -> [B, 4, 7, 128]; layer normalisation over (H, W, C)
with a per-channel scale and bias; global average pooling -> [B, 128]; dense -> [B, 100].
Parameters: 1,664 + 204,928 + 256 + 12,900 = 219,748 on MNIST (the paper: about 220k); on
CIFAR-10 halves [B, 16, 32, 3] the first conv has 4,864, so 222,948.

'same' padding as in the authors' Colab (tfkl.Conv2D(..., padding="same")). The parameter count
does not depend on the padding ('valid' gives the same 219,748 but maps 14x28 to 1x4), so the
Colab, not the count, decides it.
"""

from mi_tf import gin_keras
import keras


class ChannelLayerNorm(keras.layers.Layer):
  """Layer normalisation over (H, W, C) of each sample, with a per-CHANNEL scale and bias.

  y = (x - mean) / (std + epsilon) * scale[c] + bias[c], mean and std (population) taken over
  all of H, W and C of one sample, as the Colab's ``LayerNorm(axes=[1, 2, 3], epsilon=1e-6)``
  (note: std + epsilon, not sqrt(var + epsilon)). Keras's ``LayerNormalization(axis=[1, 2,
  3])`` normalises over the same axes but learns a scale and bias per ELEMENT (H*W*C each:
  2 x 3,584 parameters here instead of 2 x 128), which is not the paper's layer.

  Call: x [B, H, W, C] -> [B, H, W, C]. Weights: scale [C] (ones), bias [C] (zeros).
  """

  def __init__(self, epsilon=1e-6, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = epsilon

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.scale = self.add_weight(name='scale', shape=(channels,), initializer='ones')
    self.bias = self.add_weight(name='bias', shape=(channels,), initializer='zeros')

  def call(self, x):
    # Mean, std and the normalisation in at least float32 (as Keras's LayerNormalization does
    # under mixed precision): bfloat16 sums over H*W*C = 3,584 values keep ~3 digits. The
    # normalised values are cast back to the compute dtype for the per-channel scale and bias.
    dtype = self.dtype_policy.variable_dtype
    x32 = keras.ops.cast(x, dtype)
    mean = keras.ops.mean(x32, axis=(1, 2, 3), keepdims=True)
    std = keras.ops.std(x32, axis=(1, 2, 3), keepdims=True)
    normalised = keras.ops.cast((x32 - mean) / (std + self.epsilon), self.compute_dtype)
    return normalised * self.scale + self.bias

  def get_config(self):
    return dict(super().get_config(), epsilon=self.epsilon)


@gin_keras.configurable
class ConvNet(keras.Model):
  """Convolutional encoder on half images (Sec. 3.3).

  Args:
    channels: channels of the first conv layer; the second has twice as many (paper: 64).
    kernel_size: square kernel size of both convs (paper: 5).
    output_dim: size of the linear output, the representation (paper: 100).
    padding: 'same' (the Colab) or 'valid'.

  Call: x [B, H, W, C] (MNIST: 14x28x1, CIFAR-10: 16x32x3) -> [B, output_dim].
  """

  def __init__(self, channels=64, kernel_size=5, output_dim=100, padding='same', name=None,
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.conv1 = keras.layers.Conv2D(channels, kernel_size, strides=2, padding=padding,
                                     activation='relu', name='conv1')
    self.conv2 = keras.layers.Conv2D(2 * channels, kernel_size, strides=2, padding=padding,
                                     activation='relu', name='conv2')
    self.norm = ChannelLayerNorm(name='layer_norm')
    self.pool = keras.layers.GlobalAveragePooling2D(name='pool')
    self.dense = keras.layers.Dense(output_dim, name='dense')

  def call(self, x):
    out = self.dense(self.pool(self.norm(self.conv2(self.conv1(x)))))
    # The representation in the variable dtype (float32 under mixed precision): critics, the
    # probe and the export get float32 features.
    return keras.ops.cast(out, self.dtype_policy.variable_dtype)
