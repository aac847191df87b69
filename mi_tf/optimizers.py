"""Adam with TensorFlow's fused update kernel (the same optimizer, fewer memory passes).

Every experiment of the paper trains with Adam. Keras 3's ``keras.optimizers.Adam`` updates each
variable with about eight separate elementwise ops (two assign_adds, a square, a sqrt, ...), each
one a pass over memory: on the RealNVP's 28M parameters the update alone took 74 ms of a 286 ms
step (BENCHMARKS.md, "Where the RealNVP step goes"). TensorFlow's own ``ResourceApplyAdam``
kernel does the same update in one fused pass. ``FusedAdam`` is ``keras.optimizers.Adam`` with
only ``update_step`` replaced by that kernel, so:

- the formula is Keras's (Kingma & Ba, Alg. 1 with the "epsilon hat" form):
  m <- m + (g - m)(1 - beta1);  v <- v + (g^2 - v)(1 - beta2);
  w <- w - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon),
  and ``tests/test_optimizers.py`` checks it against Keras's Adam step by step;
- the optimizer's variables (iterations, momentums, velocities) are Keras's, with the same
  names and order: checkpoints written with either optimizer restore into the other;
- distribution is Keras's (the kernel runs inside ``Strategy.extended.update`` on each
  replica's variable), and the kernel has an XLA lowering (``train.jit_compile``).

Not a hand-written optimizer: the arithmetic is TensorFlow's kernel; this class only calls it.

It reads three private attributes of Keras's Adam (Keras 3.15): the slot lists ``_momentums``
and ``_velocities`` and ``_get_variable_index``. ``build`` checks once that they are there and
behave as this class expects (one slot per variable, of its shape, found by an integer index);
if a Keras release changed them, one WARNING says so and every update is Keras's own
``Adam.update_step`` (the same formula, the unfused ops).
"""

import logging

import keras
import tensorflow as tf

_LOG = logging.getLogger(__name__)

# Adam's epsilon in the authors' code: TF1's tf.train.AdamOptimizer default (Keras's is 1e-7).
# It matters where gradients are tiny: at initialisation the RealNVP shift networks' gradients
# are about 1e-8 to 1e-9, where Adam's step is about lr * g / (|g| + epsilon).
AUTHORS_EPSILON = 1e-8


class FusedAdam(keras.optimizers.Adam):
  """``keras.optimizers.Adam`` whose per-variable update is ``tf.raw_ops.ResourceApplyAdam``.

  Same constructor arguments as Keras's Adam, but epsilon defaults to the authors' 1e-8
  (``AUTHORS_EPSILON``). AMSGrad falls back to Keras's own update (the fused kernel has no
  AMSGrad form), and so does every update if ``build`` finds Keras's private slot attributes
  changed (``fused`` is then False; True once built with them intact).
  """

  def __init__(self, *args, **kwargs):
    kwargs.setdefault('name', 'adam')  # Keras's Adam's name: the same variable paths.
    if len(args) < 4:  # epsilon is Adam's 4th argument; not given positionally.
      kwargs.setdefault('epsilon', AUTHORS_EPSILON)
    super().__init__(*args, **kwargs)
    self.fused = None  # Decided by build (a Python bool: no graph op, no checkpoint entry).

  def build(self, var_list):
    super().build(var_list)
    if self.fused is None:
      problem = self._private_attributes_problem(var_list)
      if problem is not None:
        _LOG.warning("Keras %s changed Adam's private attributes FusedAdam relies on (%s); "
                     "falling back to Keras's own Adam update (same formula, slower).",
                     keras.__version__, problem)
      self.fused = problem is None

  def _private_attributes_problem(self, var_list):
    """None if ``_momentums``, ``_velocities`` and ``_get_variable_index`` are as Keras 3.15
    has them (each variable's integer index picks its momentum and velocity, Keras variables
    of its shape), else what differs. Python only; run once, at build."""
    try:
      slots = (self._momentums, self._velocities)
      for name, slot in zip(('_momentums', '_velocities'), slots):
        if len(slot) != len(var_list):
          return f'{name} holds {len(slot)} variables for {len(var_list)}'
      for variable in var_list:
        index = self._get_variable_index(variable)
        if not isinstance(index, int) or isinstance(index, bool):
          return f'_get_variable_index returned a {type(index).__name__}, not an int'
        for slot in slots:
          if not isinstance(slot[index], keras.Variable) or (
              tuple(slot[index].shape) != tuple(variable.shape)):
            return f'slot {index} is not a variable of shape {tuple(variable.shape)}'
    except (AttributeError, KeyError, IndexError, TypeError) as e:
      return f'{type(e).__name__}: {e}'
    return None

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad or self.fused is False:
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    index = self._get_variable_index(variable)
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle,
        m=self._momentums[index].handle,
        v=self._velocities[index].handle,
        beta1_power=tf.pow(beta_1, local_step),
        beta2_power=tf.pow(beta_2, local_step),
        lr=tf.cast(learning_rate, dtype),
        beta1=beta_1,
        beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype),
        grad=tf.cast(gradient, dtype))
