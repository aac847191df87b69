"""The estimator registry: one function and one ``register`` call add an estimator that the
training objective and every evaluation use, without editing any module."""

import math

import pytest
import tensorflow as tf

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import estimators
from mi_tf import launch
from mi_tf import metrics_log


def _half_infonce_per_row(scores, row_offset=0):
  """A toy estimator: half of the per-row InfoNCE terms (a valid, looser lower bound)."""
  return 0.5 * estimators.infonce_per_row(scores, row_offset)


@pytest.fixture
def half_infonce():
  estimator = estimators.register('half_infonce', 'I_HALF', _half_infonce_per_row)
  yield estimator
  del estimators.REGISTRY['half_infonce']


def test_the_paper_estimators_are_registered_with_their_metric_names():
  family = {'infonce': 'I_NCE', 'nwj': 'I_NWJ', 'dv': 'I_DV', 'js': 'I_JS', 'tuba': 'I_TUBA',
            'smile': 'I_SMILE', 'alpha': 'I_ALPHA'}
  assert {n: estimators.REGISTRY[n].metric for n in family} == family
  # Anything else is a parametrised variant registered on first use (e.g. 'smile_1').
  others = set(estimators.REGISTRY) - set(family)
  assert all(n.split('_')[0] in family for n in others), others
  scores = tf.random.stateless_normal((8, 8), seed=(1, 2))
  assert float(estimators.get('infonce').value(scores)) == float(estimators.infonce(scores))
  assert float(estimators.get('nwj').value(scores)) == float(estimators.nwj(scores))


def test_register_refuses_a_name_or_metric_twice(half_infonce):
  with pytest.raises(ValueError, match='already registered'):
    estimators.register('half_infonce', 'I_OTHER', _half_infonce_per_row)
  with pytest.raises(ValueError, match='already used'):
    estimators.register('other', 'I_HALF', _half_infonce_per_row)


@pytest.mark.parametrize('gin_name,binding,split', [
    ('sec3_2_critics_bilinear_infonce.gin', "MIMaximization.estimator = 'half_infonce'", 'test'),
    ('sec4_noniid.gin', "GaussianToy.estimator = 'half_infonce'", 'eval'),
])
def test_a_registered_estimator_trains_and_is_evaluated(half_infonce, tmp_path, gin_name,
                                                        binding, split):
  del half_infonce
  model_dir = str(tmp_path / 'run')
  final = launch.train_with_gin(model_dir, [str(GIN_DIR / gin_name)],
                                TINY_BINDINGS + (binding,))
  assert final['step'] == 4
  records = metrics_log.read(model_dir)
  train_est = [r['value'] for r in records if r['split'] == 'train' and r['metric'] == 'I_EST']
  assert len(train_est) == 2 and all(math.isfinite(v) for v in train_est)
  # The trained estimator is the new one, logged under its own name beside the paper's two.
  assert final[f'I_EST/{split}'] == final[f'I_HALF/{split}']
  assert final[f'I_HALF/{split}'] == pytest.approx(0.5 * final[f'I_NCE/{split}'], rel=1e-5,
                                                   abs=1e-6)
  assert math.isfinite(final[f'I_NWJ/{split}'])
  steps = sorted({r['step'] for r in records if r['metric'] == f'I_HALF/{split}'})
  assert steps == [0, 2, 4]


@pytest.mark.parametrize('estimator', ['dv', 'smile'])
def test_the_gaussian_toy_trains_an_estimator_that_is_no_mean_of_rows(tmp_path, estimator):
  # I_DV and I_SMILE combine statistics gathered over the replicas (base.global_estimate).
  model_dir = str(tmp_path / 'run')
  final = launch.train_with_gin(model_dir, [str(GIN_DIR / 'sec4_noniid.gin')],
                                TINY_BINDINGS + (f"GaussianToy.estimator = '{estimator}'",))
  metric = estimators.get(estimator).metric
  assert final['step'] == 4
  assert final['I_EST/eval'] == final[f'{metric}/eval'] and math.isfinite(final['I_EST/eval'])
  records = metrics_log.read(model_dir)
  train_est = [r['value'] for r in records if r['split'] == 'train' and r['metric'] == 'I_EST']
  assert len(train_est) == 2 and all(math.isfinite(v) for v in train_est)
