"""Opt-in bfloat16 mixed precision (train.precision = 'mixed_bfloat16') on the four settings
that have float32 islands: the RealNVP (additive couplings), the ConvNet (layer norm), the
residual MLP (skip sums) and the adversarial task (affine couplings, linear head).

Each run trains a few steps at the tiny bindings and checks that it finishes with finite
metrics, that the models computed in bfloat16 while their variables, the critic's scores,
I_EST, the loss, the features and the export stayed float32, and that the global Keras
policy is the one the test had before.
"""

import json
import math
import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import data
from mi_tf import evaluation
from mi_tf import export as export_lib
from mi_tf import launch
from mi_tf import metrics_log
from mi_tf import train_lib
from mi_tf.encoders import RealNVP

SETTINGS = ('sec3_1_realnvp', 'sec3_3_encoders_convnet_infonce_t2', 'sec3_1_resmlp',
            'sec3_1_adversarial')
# Two steps and evaluations at steps 0 and 2 only, a shorter converged probe and (residual
# MLP) Jacobians at 16 inputs: the four runs take seconds each.
FAST = ('train.num_steps = 2', 'train.eval_every = 2', 'train.log_every = 2',
        'train.checkpoint_every = 2', 'converged_probe.max_iterations = 20')
EXTRA = {'sec3_1_resmlp': ('MIMaximization.condition_number_examples = 16',)}
BF16 = ("train.precision = 'mixed_bfloat16'",)


def _dtype(x):
  return keras.backend.standardize_dtype(x.dtype)


class Run:
  """A finished mixed_bfloat16 run of one gin file, with its task object kept."""

  def __init__(self, setting, model_dir):
    self.policy_before = keras.mixed_precision.global_policy().name
    launch.parse_gin([str(GIN_DIR / f'{setting}.gin')], TINY_BINDINGS + FAST + BF16
                     + EXTRA.get(setting, ()))
    try:
      self.task = gin.query_parameter('train.task').scoped_configurable_fn()
      self.final = train_lib.train(model_dir, task=self.task)
    finally:
      gin.clear_config()
    self.policy_after = keras.mixed_precision.global_policy().name
    self.model_dir = model_dir
    x1, x2, _ = self.task.data.eval_split('test')
    self.x1, self.x2 = tf.constant(x1[:8]), tf.constant(x2[:8])


@pytest.fixture(scope='module', params=SETTINGS)
def run(request, tmp_path_factory):
  return Run(request.param, str(tmp_path_factory.mktemp(request.param) / 'run'))


def test_run_finishes_with_finite_metrics_and_restores_the_policy(run):
  assert run.final['step'] == 2
  values = {k: v for k, v in run.final.items() if isinstance(v, float)}
  assert 'probe/test_accuracy' in values
  assert all(math.isfinite(v) for v in values.values()), values
  train_records = [r for r in metrics_log.read(run.model_dir) if r['split'] == 'train']
  assert train_records and all(math.isfinite(r['value']) for r in train_records)
  assert run.policy_before == run.policy_after == 'float32'
  # The run directory says which precision it trained under (the report's precision line).
  with open(os.path.join(run.model_dir, 'run_info.json')) as f:
    assert [s['precision'] for s in json.load(f)['sessions']] == ['mixed_bfloat16']


def test_models_compute_in_bfloat16_with_float32_variables(run):
  models = [run.task.g1] + [getattr(run.task, n) for n in ('g2', 'critic') if
                            hasattr(run.task, n)]
  for model in models:
    assert model.dtype_policy.name == 'mixed_bfloat16', model.name
  floating = [v for m in run.task.trackables().values() for v in m.variables
              if keras.backend.is_float_dtype(_dtype(v))]
  assert floating and {_dtype(v) for v in floating} == {'float32'}


def test_features_scores_estimate_and_loss_are_float32(run):
  task = run.task
  z1 = task.g1(run.x1)
  assert _dtype(z1) == 'float32'
  assert evaluation.encode(task.g1, run.x1.numpy()).dtype == np.float32
  if hasattr(task, 'critic'):
    z2 = task.g2(run.x2)
    assert _dtype(task.critic(z1, z2)) == 'float32'
    loss, i_est = task.loss({'x1': run.x1, 'x2': run.x2})
    assert _dtype(loss) == _dtype(i_est) == 'float32'
  else:  # Adversarial: the head's logits feed both cross-entropies.
    assert _dtype(task.head(z1)) == 'float32'
  if isinstance(task.g1, RealNVP):
    assert _dtype(task.g1.forward_log_det_jacobian(run.x1)) == 'float32'


def test_export_returns_float32(run):
  encode, _ = export_lib.load_encoder(os.path.join(run.model_dir, 'export'))
  out = encode(run.x1.numpy())
  assert out.dtype == tf.float32
  # The same function as the trained g1 (bfloat16 inside, float32 out), to bfloat16 round-off:
  # the SavedModel's graph and the eager model may round differently (with TensorFlow's
  # oneDNN operations, on by default on CPUs with AVX-512, they do: one bfloat16 ulp, 0.0078
  # on features of about 1, seen), and a bfloat16 ulp is 2^-8 relative. Another function
  # (other weights) differs by the features' own scale.
  expected = run.task.g1(run.x1).numpy()
  scale = float(np.max(np.abs(expected)))
  np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=2 ** -6 * scale)
  assert float(np.mean(np.abs(out.numpy() - expected))) <= 2 ** -8 * scale


def _realnvp_inverse_error(policy, x):
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    keras.utils.set_random_seed(0)
    # Large kernels (stddev 0.05): shifts of order 1, so that the sums are not trivially exact.
    model = RealNVP(num_couplings=4, hidden_units=(64,), kernel_stddev=0.05, seed=0)
    y = model.forward(x)
    back = model.inverse(tf.identity(y))
    flat = tf.reshape(x, [x.shape[0], -1])
    return y, float(tf.reduce_max(tf.abs(back - flat))), model
  finally:
    keras.mixed_precision.set_global_policy(previous)


def test_additive_realnvp_in_bfloat16_inverts_to_float32_rounding():
  images, _ = data.load_images('mnist', 'train[:32]')
  x = data.to_halves(images)[0]
  y32, err32, _ = _realnvp_inverse_error('float32', x)
  y16, err16, model = _realnvp_inverse_error('mixed_bfloat16', x)
  assert model.compute_dtype == 'bfloat16' and _dtype(y16) == 'float32'
  shift = float(tf.reduce_max(tf.abs(y32 - tf.reshape(x, y32.shape))))
  assert shift > 0.1  # The couplings move the data: the sums carry rounding.
  # bfloat16 MLPs give other shifts (bfloat16 has 8 bits): a different function ...
  assert float(tf.reduce_max(tf.abs(y16 - y32))) > 1e-4
  # ... inverted as exactly as the float32 model (a bfloat16 sum would lose ~2^-9 of |y|).
  assert err16 <= max(4 * err32, 1e-6), (err16, err32)


def test_policy_is_restored_when_the_run_fails(tmp_path):
  assert keras.mixed_precision.global_policy().name == 'float32'
  with pytest.raises(ValueError, match='log_every'):  # Raised after the policy was set.
    launch.train_with_gin(str(tmp_path / 'run'), [str(GIN_DIR / 'sec3_1_resmlp.gin')],
                          TINY_BINDINGS + BF16 + ('train.log_every = 0',))
  assert keras.mixed_precision.global_policy().name == 'float32'


def test_unknown_precision_is_refused_before_anything_is_written(tmp_path):
  model_dir = tmp_path / 'run'
  with pytest.raises(ValueError, match=r"train.precision must be one of \('float32', "
                                       r"'mixed_bfloat16'\), got 'float16'"):
    launch.train_with_gin(str(model_dir), [str(GIN_DIR / 'sec3_1_resmlp.gin')],
                          TINY_BINDINGS + ("train.precision = 'float16'",))
  assert not model_dir.exists()
  assert keras.mixed_precision.global_policy().name == 'float32'
