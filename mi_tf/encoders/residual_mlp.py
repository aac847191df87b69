"""The residual MLP encoder of Sec. 3.1 (Fig. 2, Fig. 5): invertible at initialisation.

Five dense layers of width 392 = D on the flattened half image, each with a skip connection,

    x <- act_l(W_l x + b_l) + x,   act_l = ReLU for l = 1..4, identity for l = 5,

(the authors' Colab: ``x = layer(x) + x`` with the activation inside ``layer``). Kernels are
truncated normal with stddev 1e-4 and biases zero, so at initialisation every residual branch
is ~0 and the encoder is ~the identity (log condition number of its Jacobian ~0). Nothing
keeps it invertible during training: Sec. 3.1 measures how ill-conditioned it becomes
(``mi_tf.conditioning``).

Mixed precision (``train.precision = 'mixed_bfloat16'``): the dense branches compute in
bfloat16, the skip path x and every sum act(W x + b) + x in the variable dtype (float32), as
the RealNVP's additive couplings do: at initialisation each branch is about 1e-3 of a
pixel's value or less, below bfloat16's resolution (8 significant bits, 2^-8 relative), so a
bfloat16 sum would round it away wherever x is not ~0.
"""

import tensorflow as tf

from mi_tf import gin_keras
import keras


class Residual(keras.layers.Layer):
  """x -> activation(Dense(x)) + x, a width-preserving residual block."""

  def __init__(self, units, activation=None, kernel_stddev=1e-4, **kwargs):
    super().__init__(**kwargs)
    self.dense = keras.layers.Dense(
        units, activation=activation,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=kernel_stddev),
        bias_initializer='zeros', dtype=self.dtype_policy, name='dense')

  @property
  def input_dtype(self):
    # The skip path stays in the variable dtype (float32 under mixed precision; module notes):
    # Keras would otherwise cast x to the compute dtype, bfloat16, before call().
    return self.dtype_policy.variable_dtype

  def build(self, input_shape):
    self.dense.build(input_shape)

  def call(self, x):
    # The branch is computed in the compute dtype; the sum is taken in x's (float32) dtype.
    return tf.cast(self.dense(x), x.dtype) + x


@gin_keras.configurable
class ResidualMLP(keras.Model):
  """Residual MLP: [B, H, W, C] (flattened to D = width) -> [B, width].

  Args:
    num_layers: number of residual dense layers (paper: 5); ReLU on all but the last.
    width: their width, which must equal the flattened input size (paper: 392).
    kernel_stddev: stddev of the truncated-normal kernel initialiser (paper: 1e-4).
  """

  def __init__(self, num_layers=5, width=392, kernel_stddev=1e-4, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.width = int(width)
    # Sublayers share this model's dtype policy (float64 in tests; Keras casts otherwise).
    # The flattened input, the skip path, keeps the variable dtype (float32 under mixed).
    self.flatten = keras.layers.Flatten(dtype=self.dtype_policy.variable_dtype)
    self.net = keras.Sequential(
        [Residual(self.width, activation='relu' if k < num_layers - 1 else None,
                  kernel_stddev=kernel_stddev, dtype=self.dtype_policy,
                  name=f'residual_{k}')
         for k in range(num_layers)], name='net')

  @property
  def input_dtype(self):
    # Inputs stay in the variable dtype: the skip path of the first block (module notes).
    return self.dtype_policy.variable_dtype

  def call(self, x):
    x = self.flatten(x)
    if x.shape[-1] != self.width:
      raise ValueError(f'ResidualMLP(width={self.width}) needs inputs with {self.width} '
                       f'features (the skip connections keep the width); got {x.shape[-1]}.')
    # The blocks are applied one by one, not through the Sequential's own call, which would
    # cast x to the compute dtype (bfloat16 under mixed precision) before the first block.
    for block in self.net.layers:
      x = block(x)
    return x
