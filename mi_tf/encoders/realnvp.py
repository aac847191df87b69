"""The invertible RealNVP encoder of Sec. 3.1 (Fig. 1), built from TFP bijectors.

g(x) = flow.forward(x) on the flattened 392-d half image, where (in TFP's ``Chain`` order,
exactly as the authors' Colab builds it)

    flow = Chain([C_1, P_1, C_2, P_2, ..., C_K, P_K]),   K = num_couplings = 30,

so an input passes P_K, C_K, P_{K-1}, ..., P_1, C_1: a fixed random permutation P_k goes with
every coupling C_k (listed after it in the chain). Each C_k is a ``tfb.RealNVP`` coupling
with ``num_masked = 196``: the first 196 coordinates pass unchanged and condition the other 196,

    additive (NICE):  y[196:] = x[196:] + t_k(x[:196])
    affine:           y[196:] = x[196:] * s_k(x[:196]) + t_k(x[:196]),
                      s_k = 1e-7 + softplus(raw_k)  (the Colab's modified RealNVP, App. B)

with t_k (and raw_k) from the k-th MLP: two ReLU layers of 512 units and a linear output of
196 (additive) or 2 x 196 (affine) units, kernels truncated normal with stddev 1e-4, zero
biases. At initialisation every shift is ~0 (and every affine scale ~log 2), so the additive
encoder is almost a permutation of the pixels.

Implementation notes (each measured on this stack: TF 2.21, Keras 3, TFP 0.25):
  * The MLPs are Keras layers owned by this model as named attributes (``coupling_00`` ...),
    so they are trainable, receive gradients and are saved by ``tf.train.Checkpoint`` and in
    SavedModels (TFP's ``real_nvp_default_template`` builds tf1 layers that Keras 3 does not
    track: zero trainable variables; a plain Python list of layers would not be checkpointed).
  * The permutations are drawn once with NumPy and stored in a non-trainable int32 variable
    [K, 392], so a restored or exported model is the same function.
  * TFP bijectors cache outputs per input tensor, across instances with equal parameters:
    calling the flow twice on the same eager tensor after a training step would return the
    stale output, and ``inverse(forward(x))`` would return ``x`` from the cache
    without computing anything. Every entry point therefore feeds the chain a fresh tensor
    (``tf.identity``), and the chain itself is rebuilt on every call (cheap Python objects;
    once per trace inside ``tf.function``).
  * Mixed precision (``train.precision = 'mixed_bfloat16'``): only the shift (and scale) MLPs
    compute in bfloat16. The flow itself (inputs, the coupling's addition or affine map, the
    permutations, log-determinants and outputs) stays in the variable dtype, float32: at
    initialisation the shifts are orders of magnitude below bfloat16's resolution of x (8
    significant bits, 2^-8 relative) and a bfloat16 sum would round them away; in float32,
    g^-1(g(x)) is as exact as in a float32 model (tests/test_precision.py).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from mi_tf import gin_keras
import keras

tfb = tfp.bijectors

COUPLINGS = ('additive', 'affine')
# Lower bound of the affine scale, s = 1e-7 + softplus(raw) (the authors' Colab, App. B).
MIN_SCALE = 1e-7


@gin_keras.configurable
class RealNVP(keras.Model):
  """Invertible encoder: [B, H, W, C] (flattened to D = H*W*C) -> [B, D].

  Args:
    num_couplings: number of coupling layers K (paper: 30).
    hidden_units: sizes of the ReLU layers of each shift (and scale) MLP (paper: 512, 512).
    coupling: 'additive' (shift only; Fig. 1a/b) or 'affine' (shift and scale
      1e-7 + softplus; the adversarial encoder of Fig. 1c).
    kernel_stddev: stddev of the truncated-normal kernel initialiser (paper: 1e-4); biases
      start at zero.
    input_dim: D, the size of the flattened input (MNIST half: 392); the coupling masks
      ``input_dim // 2`` coordinates.
    seed: seed of the K permutations; None draws it from NumPy's global generator, which
      ``train`` seeds with the run's seed (so g1 and g2 get different permutations, both a
      function of the run's seed). The permutations are saved with the model either way.
  """

  def __init__(self, num_couplings=30, hidden_units=(512, 512), coupling='additive',
               kernel_stddev=1e-4, input_dim=392, seed=None, name=None, **kwargs):
    super().__init__(name=name, **kwargs)
    if coupling not in COUPLINGS:
      raise ValueError(f'RealNVP.coupling must be one of {COUPLINGS}, got {coupling!r}.')
    if num_couplings < 1:
      raise ValueError(f'RealNVP.num_couplings must be >= 1, got {num_couplings}.')
    self.num_couplings = int(num_couplings)
    self.hidden_units = tuple(int(h) for h in hidden_units)
    self.coupling = coupling
    self.kernel_stddev = float(kernel_stddev)
    self.input_dim = int(input_dim)
    self.num_masked = self.input_dim // 2
    out_units = self.input_dim - self.num_masked
    if seed is None:
      seed = int(np.random.randint(2**31 - 1))
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(self.input_dim) for _ in range(self.num_couplings)])
    perms = perms.astype(np.int32)
    self.permutations = self.add_weight(
        name='permutations', shape=perms.shape, dtype='int32', trainable=False,
        initializer=lambda shape, dtype=None: tf.constant(perms, tf.int32))
    # In the flow's dtype: a Flatten under the mixed policy would cast its input to bfloat16.
    self.flatten = keras.layers.Flatten(dtype=self.flow_dtype)
    for k in range(self.num_couplings):
      net = keras.Sequential(
          [keras.layers.Dense(h, activation='relu', kernel_initializer=self._kernel_init(),
                              bias_initializer='zeros') for h in self.hidden_units]
          + [keras.layers.Dense((1 if coupling == 'additive' else 2) * out_units,
                                kernel_initializer=self._kernel_init(),
                                bias_initializer='zeros')],
          name=f'coupling_{k:02d}')
      net.build((None, self.num_masked))
      setattr(self, f'coupling_{k:02d}', net)  # Named attribute: tracked and checkpointed.

  @property
  def input_dtype(self):
    # Keras casts a layer's floating inputs to input_dtype (the compute dtype, bfloat16 under
    # mixed precision): the flow's inputs stay in the variable dtype instead (module notes).
    return self.flow_dtype

  @property
  def flow_dtype(self):
    """dtype of the flow's data path: the variable dtype (float32 under mixed precision)."""
    return self.dtype_policy.variable_dtype

  def _kernel_init(self):
    return keras.initializers.TruncatedNormal(stddev=self.kernel_stddev)

  def coupling_net(self, k):
    """The k-th shift (and scale) MLP: [B, 196] -> [B, 196] or [B, 392]."""
    return getattr(self, f'coupling_{k:02d}')

  def _bijector_fn(self, k):
    net = self.coupling_net(k)

    def bijector_fn(x0, output_units, **condition_kwargs):
      del condition_kwargs
      # The MLP computes in the compute dtype (bfloat16 under mixed precision); its output is
      # cast to the flow's dtype so that x + shift, the scale and the log-det are float32.
      params = tf.cast(net(x0), self.flow_dtype)
      if self.coupling == 'additive':
        return tfb.Shift(params)
      shift, raw = params[..., :output_units], params[..., output_units:]
      # Chain applies Scale first: y = s * x + t.
      return tfb.Chain([tfb.Shift(shift), tfb.Scale(MIN_SCALE + tf.nn.softplus(raw))])

    return bijector_fn

  def flow(self):
    """A fresh ``tfb.Chain([C_1, P_1, ..., C_K, P_K])`` over this model's variables."""
    bijectors = []
    for k in range(self.num_couplings):
      bijectors.append(tfb.RealNVP(
          num_masked=self.num_masked, bijector_fn=self._bijector_fn(k),
          is_constant_jacobian=self.coupling == 'additive', name=f'coupling_{k:02d}'))
      bijectors.append(tfb.Permute(permutation=self.permutations[k], name=f'permute_{k:02d}'))
    return tfb.Chain(bijectors, name='realnvp')

  def _flat(self, x):
    x = tf.cast(tf.convert_to_tensor(x), self.flow_dtype)  # float32 inputs under bfloat16.
    if x.shape.rank != 2:
      x = self.flatten(x)
    if x.shape[-1] != self.input_dim:
      raise ValueError(f'RealNVP(input_dim={self.input_dim}) got inputs with '
                       f'{x.shape[-1]} features.')
    return tf.identity(x)  # A fresh tensor: never a TFP cache hit (module docstring).

  def forward(self, x):
    """g(x): [B, D] or [B, H, W, C] -> [B, D]."""
    return self.flow().forward(self._flat(x))

  def inverse(self, y):
    """g^{-1}(y): [B, D] -> [B, D] (flattened inputs)."""
    return self.flow().inverse(self._flat(y))

  def forward_log_det_jacobian(self, x):
    """log |det dg/dx| per example: [B, D] (or images) -> [B]; 0 for additive couplings."""
    x = self._flat(x)
    ldj = self.flow().forward_log_det_jacobian(x, event_ndims=1)
    return tf.broadcast_to(ldj, tf.shape(x)[:1])

  def call(self, x):
    return self.forward(x)
