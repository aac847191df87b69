"""A run continues to more steps; a finished run is left alone; windows need no divisibility.

Equality is exact (train.deterministic, the data stream a function of (seed, step)): a run of
40 steps continued to 80 ends with the weights and metrics of an uninterrupted 80-step run.
"""

import json
import os

import numpy as np
import pytest

from conftest import GIN_DIR, TINY_BINDINGS, checkpoint_weights, metrics_without_timing
from mi_tf import launch
from mi_tf import metrics_log
from mi_tf import train_lib

GIN = str(GIN_DIR / 'sec3_2_critics_bilinear_infonce.gin')
# eval_every is not a multiple of log_every: windows also end at every evaluation.
BASE = TINY_BINDINGS + ('train.eval_every = 25', 'train.log_every = 10',
                        'train.checkpoint_every = 20', 'train.deterministic = True')


def _train(model_dir, num_steps):
  return launch.train_with_gin(model_dir, [GIN], BASE + (f'train.num_steps = {num_steps}',))


_weights = checkpoint_weights
_metrics = metrics_without_timing


def _snapshot(path):
  return {os.path.join(root, f): (os.path.getsize(os.path.join(root, f)),
                                  os.path.getmtime(os.path.join(root, f)))
          for root, _, names in os.walk(path) for f in names}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp('uninterrupted') / 'run')
  _train(model_dir, 80)
  return model_dir


def test_windows_end_at_log_evaluation_and_checkpoint_steps(uninterrupted):
  train_steps = sorted({r['step'] for r in metrics_log.read(uninterrupted)
                        if r['split'] == 'train'})
  assert train_steps == [10, 20, 25, 30, 40, 50, 60, 70, 75, 80]
  eval_steps = sorted({r['step'] for r in metrics_log.read(uninterrupted)
                       if r['split'] == 'eval'})
  assert eval_steps == [0, 25, 50, 75, 80]


def test_a_finished_run_continues_to_more_steps_as_if_uninterrupted(uninterrupted, tmp_path):
  model_dir = str(tmp_path / 'run')
  short = _train(model_dir, 40)
  assert short['step'] == 40
  final = _train(model_dir, 80)
  assert final['step'] == 80
  # The short run's result is kept beside the new one.
  with open(os.path.join(model_dir, 'final_metrics.step_40.json')) as f:
    assert json.load(f)['step'] == 40
  with open(os.path.join(model_dir, 'config.gin')) as f:
    assert 'train.num_steps = 80' in f.read()
  sessions = json.load(open(os.path.join(model_dir, 'run_info.json')))['sessions']
  assert [s['start_step'] for s in sessions] == [0, 40]

  ref = _weights(uninterrupted)
  weights = _weights(model_dir)
  assert set(weights) == set(ref)
  for name, value in ref.items():
    np.testing.assert_array_equal(weights[name], value, err_msg=name)
  ref_metrics, metrics = _metrics(uninterrupted), _metrics(model_dir)
  assert set(metrics) == set(ref_metrics)
  for key, value in ref_metrics.items():
    assert metrics[key] == value, key


def test_rerunning_a_finished_run_changes_nothing(uninterrupted):
  before = _snapshot(uninterrupted)
  final = _train(uninterrupted, 80)
  assert final['step'] == 80 and final == json.load(
      open(os.path.join(uninterrupted, 'final_metrics.json')))
  assert _snapshot(uninterrupted) == before


def test_num_steps_below_the_reached_step_is_refused(uninterrupted):
  before = _snapshot(uninterrupted)
  with pytest.raises(train_lib.RunDirError, match='reached step 80'):
    _train(uninterrupted, 50)
  assert _snapshot(uninterrupted) == before


@pytest.mark.parametrize('step,num_steps,every,expected', [
    (0, 80, 25, 5), (10, 80, 25, 4), (25, 80, 25, 4), (30, 80, 25, 3), (80, 80, 25, 1),
    (0, 2000, 1000, 3), (1000, 2000, 1000, 2), (1100, 2000, 1000, 1)])
def test_remaining_evaluations(step, num_steps, every, expected):
  assert train_lib.remaining_evaluations(step, num_steps, every) == expected


def test_steps_per_second_leaves_out_the_evaluations(tmp_path, monkeypatch):
  from mi_tf.tasks import mi_maximization  # pylint: disable=g-import-not-at-top
  evaluate = mi_maximization.MIMaximization.evaluate

  def slow_evaluate(self, step, final=False):
    if step > 0:
      import time  # pylint: disable=g-import-not-at-top
      time.sleep(2.0)
    return evaluate(self, step, final)

  monkeypatch.setattr(mi_maximization.MIMaximization, 'evaluate', slow_evaluate)
  model_dir = str(tmp_path / 'run')
  launch.train_with_gin(model_dir, [GIN], TINY_BINDINGS + (
      'train.num_steps = 40', 'train.eval_every = 10', 'train.log_every = 10',
      'train.checkpoint_every = 10'))
  rates = {r['step']: r['value'] for r in metrics_log.read(model_dir)
           if r['metric'] == 'steps_per_second'}
  # The windows after the first follow a 2 s evaluation: counted in, they would be at most
  # 10 steps / 2 s.
  assert min(rates[s] for s in (20, 30, 40)) > 10, rates


class _Evaluations:
  def __init__(self, mean):
    self.mean = mean

  def mean_seconds(self):
    return self.mean


def test_eta_adds_the_remaining_evaluations_at_their_mean_time():
  progress = train_lib._Progress(2000, 0, 0.0, 1000, _Evaluations(30.0))
  assert progress.eta(100, 100.0, first=True) == 'after the next window'
  # 1,900 steps at 100 steps/s, then the evaluations at 1,000 and 2,000.
  assert progress.eta(100, 100.0, first=False) == '0:01:19 (steps 0:00:19 + 2 evaluations 0:01:00)'
  assert train_lib._Progress(2000, 0, 0.0, 1000, _Evaluations(None)).eta(
      100, 100.0, first=False) == '0:00:19'
