"""Encoders g1, g2 (Sec. 3 of the paper), one module per family.

Every encoder is a ``keras.Model`` that takes a batch of half images [B, H, W, C] (the layout
``mi_tf.data`` yields) and returns representations [B, D]. Encoders on vectors flatten the half
first: the flattened top half of MNIST is exactly the paper's X1 (the first 392 of 784 values).
Adding an encoder family = adding a module here with a ``@gin.configurable`` class, and a gin
file that names it; the training loop does not change.
"""

from mi_tf.encoders.mlp import MLP  # noqa: F401
from mi_tf.encoders.convnet import ConvNet  # noqa: F401
from mi_tf.encoders.realnvp import RealNVP  # noqa: F401
from mi_tf.encoders.residual_mlp import ResidualMLP  # noqa: F401
