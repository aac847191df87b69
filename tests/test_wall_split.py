"""The wall-time split a run records (final_metrics.json 'time', metrics.jsonl time/...) and the
evaluation cost cuts: each cut path gives exactly the values of the path it replaced."""

import functools
import json
import math
import os

import pytest
import tensorflow as tf

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import data
from mi_tf import evaluation
from mi_tf import launch
from mi_tf import metrics_log
from mi_tf import timing
from mi_tf.encoders import RealNVP
from mi_tf.report import results as results_lib

GIN = str(GIN_DIR / 'sec3_1_realnvp.gin')
# A 2-coupling RealNVP (conftest) that also reports the Jacobian conditioning, so that one
# tiny run goes through every timed part of an MI evaluation.
BINDINGS = TINY_BINDINGS + ('MIMaximization.condition_number_examples = 8',
                            'RealNVP.hidden_units = (64, 64)', 'RealNVP.kernel_stddev = 0.05')


# The evaluation's invertibility metrics as computed before the cut (eager, per batch).
_eager_invertibility_metrics = functools.partial(evaluation.invertibility_metrics, graph=False)


def _values(model_dir):
  """{(step, split, metric): value} of metrics.jsonl without the timing entries."""
  return {(r['step'], r['split'], r['metric']): r['value']
          for r in metrics_log.read(model_dir)
          if not r['metric'].endswith(('seconds', 'steps_per_second'))}


def test_time_split_is_recorded_and_cut_paths_give_the_same_run(tmp_path, monkeypatch):
  cut_dir = str(tmp_path / 'cut')
  final = launch.train_with_gin(cut_dir, [GIN], BINDINGS)
  with monkeypatch.context() as m:
    m.setattr(evaluation, 'invertibility_metrics', _eager_invertibility_metrics)
    launch.train_with_gin(str(tmp_path / 'uncut'), [GIN], BINDINGS)
  cut, uncut = _values(cut_dir), _values(str(tmp_path / 'uncut'))
  assert any(k[2] == 'invertibility/max_reconstruction_error' for k in cut)
  assert any(k[2] == 'jacobian/log_cond_median' for k in cut)
  # Bitwise: every loss, estimate and probe value. The invertibility errors are float32
  # round-off themselves (about 2e-7): with TensorFlow's oneDNN operations (on by default on
  # CPUs with AVX-512) the one-graph and the eager computations round differently, so these
  # agree to round-off (2.4e-7 vs 1.8e-7 seen), bit for bit without oneDNN.
  assert cut.keys() == uncut.keys()
  inv = {k for k in cut if k[2].startswith('invertibility/')}
  assert {k: v for k, v in cut.items() if k not in inv} == {
      k: v for k, v in uncut.items() if k not in inv}
  for k in inv:
    assert abs(cut[k] - uncut[k]) <= 1e-6, (k, cut[k], uncut[k])

  with open(os.path.join(cut_dir, 'final_metrics.json')) as f:
    written = json.load(f)
  t = written['time']
  assert t == final['time']
  assert t['eval/count'] == 3 and t['num_steps'] == 4 and t['train_first_call_steps'] == 2
  parts = ('encode', 'estimators', 'probe', 'probe_fast', 'invertibility', 'jacobian',
           'load_splits', 'write')
  for name in ('train_first_call', 'train_steps', 'checkpoint', 'export', 'eval', 'startup'):
    assert t[name] > 0, name
  for name in parts:
    assert t[f'eval/{name}'] > 0, name
  assert sum(t[f'eval/{name}'] for name in parts) <= t['eval']
  session = sum(t[k] for k in ('train_first_call', 'train_steps', 'checkpoint', 'export',
                               'eval'))
  assert session <= written['wall_seconds_this_session']
  assert math.isclose(session + t['other'], written['wall_seconds_this_session'], rel_tol=0.05)
  # Every evaluation logs its parts; the report's aggregation leaves them out.
  records = metrics_log.read(cut_dir)
  steps = {r['step'] for r in records if r['metric'] == 'time/encode_seconds'}
  assert steps == {0, 2, 4}
  fast = {r['step'] for r in records if r['metric'] == 'time/probe_fast_seconds'}
  assert fast == {0, 4}
  assert results_lib._EXCLUDED.search('time/encode_seconds')  # pylint: disable=protected-access
  rows = results_lib.aggregate({'s': {0: records}})
  assert not any(r['metric'].startswith(timing.TIME_PREFIX) for r in rows)


@pytest.mark.parametrize('coupling', ['additive', 'affine'])
def test_invertibility_metrics_equal_the_eager_loop(coupling):
  """Additive flows run in one graph (traced once); affine ones keep the eager loop."""
  tf.keras.utils.set_random_seed(1)
  encoder = RealNVP(num_couplings=3, hidden_units=(32, 32), coupling=coupling,
                    kernel_stddev=0.1)
  x = data.eval_halves('mnist', 'test[:600]')[0]
  encoder(tf.constant(x[:2]))
  expected = _eager_invertibility_metrics(encoder, x)
  assert expected['invertibility/max_reconstruction_error'] > 0
  for _ in range(2):
    assert evaluation.invertibility_metrics(encoder, x) == expected
  fns = evaluation._INVERTIBILITY_FNS  # pylint: disable=protected-access
  if coupling == 'additive':
    # 250, 250, 100: two shapes, then reduce_retracing's one generalised trace at most.
    assert fns[encoder].experimental_get_tracing_count() <= 2
  else:
    assert encoder not in fns
