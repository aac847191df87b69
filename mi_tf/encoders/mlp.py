"""The MLP encoder of Sec. 3.2 and 3.3: 392-300-300-100 (ReLU, ReLU, linear)."""

from mi_tf import gin_keras
import keras


@gin_keras.configurable
class MLP(keras.Model):
  """Fully connected encoder on the flattened half image.

  Args:
    hidden_units: sizes of the ReLU layers (paper: 300, 300).
    output_dim: size of the linear output layer, the representation (paper: 100).

  Call: x [B, H, W, C] (or [B, H*W*C]) -> [B, output_dim].
  """

  def __init__(self, hidden_units=(300, 300), output_dim=100, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    self.flatten = keras.layers.Flatten()
    self.net = keras.Sequential(
        [keras.layers.Dense(h, activation='relu') for h in hidden_units]
        + [keras.layers.Dense(output_dim)], name='net')

  def call(self, x):
    # The representation in the variable dtype (float32 under mixed precision): critics, the
    # probe and the export get float32 features.
    return keras.ops.cast(self.net(self.flatten(x)), self.dtype_policy.variable_dtype)
