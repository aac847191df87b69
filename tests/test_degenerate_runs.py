"""No silent success: a run whose steps were all skipped, or whose weights never changed, ends
with status 'degenerate' and its reasons in final_metrics.json, a WARNING, and a mark in the
runner's status table and summary; an ordinary run has status 'ok'."""

import io
import json
import logging
import time

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import executor
from mi_tf import launch
from mi_tf import runs as runs_lib
from mi_tf import study
from mi_tf import train_lib

TOY = str(GIN_DIR / 'sec4_iid.gin')
MNIST = str(GIN_DIR / 'sec3_2_critics_bilinear_infonce.gin')


def _final(model_dir):
  return json.loads((model_dir / 'final_metrics.json').read_text())


def _run(setting, model_dir):
  return runs_lib.Run(study.Setting(setting), 0, str(model_dir))


def test_an_all_skipped_run_is_degenerate_and_the_runner_says_so(tmp_path, caplog):
  # An infinite target makes every loss |I_EST - inf| = inf: every step is skipped.
  model_dir = tmp_path / 'skipped'
  with caplog.at_level(logging.WARNING, logger='mi_tf.train_lib'):
    launch.train_with_gin(str(model_dir), [MNIST], TINY_BINDINGS + (
        'train.num_steps = 2', "train.nonfinite_policy = 'skip'",
        'MIMaximization.target = 1e999'))
  final = _final(model_dir)
  assert final['status'] == 'degenerate' and final['skipped_steps'] == final['step'] == 2
  assert final['degenerate_reasons'] == [
      "all 2 training steps were skipped (non-finite loss or gradient, "
      "train.nonfinite_policy = 'skip')"]
  warnings = [r.getMessage() for r in caplog.records if 'DEGENERATE RUN' in r.getMessage()]
  assert len(warnings) == 1 and 'all 2 training steps were skipped' in warnings[0]

  run = _run('skipped', model_dir)
  [(_, state, detail)] = runs_lib.status_table([run], str(tmp_path))
  assert state == 'finished' and detail.startswith('(degenerate: all 2 training steps')
  out = io.StringIO()
  executor.print_summary({'completed': [run.key], 'skipped': [], 'failed': [], 'busy': []},
                         time.time(), out, [run])
  lines = out.getvalue().splitlines()
  assert lines[0].endswith('0 busy; 1 of the finished learned nothing (degenerate).'), lines
  assert lines[1].startswith(f'  DEGENERATE {run.key}: all 2 training steps were skipped')


def test_unchanged_weights_are_degenerate_and_an_ordinary_run_is_ok(tmp_path):
  frozen = tmp_path / 'frozen'
  launch.train_with_gin(str(frozen), [TOY], TINY_BINDINGS + ('GaussianToy.learning_rate = 0.0',))
  final = _final(frozen)
  assert final['status'] == 'degenerate' and final['skipped_steps'] == 0
  assert final['degenerate_reasons'] == ['no trainable weight changed in this session']

  ordinary = tmp_path / 'ordinary'
  launch.train_with_gin(str(ordinary), [TOY], TINY_BINDINGS)
  final = _final(ordinary)
  assert final['status'] == 'ok' and final['degenerate_reasons'] == []
  assert final['skipped_steps'] == 0 and final['step'] == 4
  [(_, state, detail)] = runs_lib.status_table([_run('ordinary', ordinary)], str(tmp_path))
  assert (state, detail) == ('finished', '')
  # A run written before runs recorded a status reads as an ordinary one.
  del final['status'], final['degenerate_reasons']
  (ordinary / 'final_metrics.json').write_text(json.dumps(final))
  assert runs_lib.degenerate_reasons(_run('ordinary', ordinary)) is None


def _records(losses, log_every=100, skipped=None):
  """metrics.jsonl train records of windows with these mean losses (skipped: cumulative
  skipped steps after each window)."""
  out = []
  for i, loss in enumerate(losses):
    step = (i + 1) * log_every
    out.append({'step': step, 'split': 'train', 'metric': 'loss', 'value': loss})
    out.append({'step': step, 'split': 'train', 'metric': 'skipped_steps',
                'value': skipped[i] if skipped else 0})
  return out


def test_the_objective_rule_is_conservative():
  steps = 1000
  falling = [1.0 - 0.05 * i for i in range(10)]
  assert train_lib.degenerate_reasons(_records(falling), steps, 0, 'loss') == []
  flat = [0.5] * 10
  [reason] = train_lib.degenerate_reasons(_records(flat), steps, 0, 'loss')
  assert reason == ('the training loss did not fall: 0.5 in the first log window (step 100), '
                    '0.5 in the last (step 1000)')
  # Fewer windows than MIN_OBJECTIVE_WINDOWS, or a task without such an objective: no verdict.
  assert train_lib.degenerate_reasons(_records(flat[:9]), 900, 0, 'loss') == []
  assert train_lib.degenerate_reasons(_records(flat), steps, 0, None) == []
  # A window whose steps were all skipped logs 0.0, which is no value: left out, so these
  # rising losses are found although the last window's logged value (0.0) is the lowest.
  rising = [0.1 * i for i in range(1, 11)] + [0.0]
  skipped = [0] * 10 + [100]
  [reason] = train_lib.degenerate_reasons(_records(rising, skipped=skipped), 1100, 100, 'loss')
  assert '0.1 in the first log window (step 100), 1 in the last (step 1000)' in reason
  # No step run (num_steps = 0): nothing to judge.
  assert train_lib.degenerate_reasons([], 0, 0, 'loss', weights_changed=False) == []


def test_the_report_lists_a_degenerate_run_apart():
  from mi_tf.report import results  # pylint: disable=g-import-not-at-top
  ok = {'finished': True, 'records': [], 'config': 'x', 'final': {'status': 'ok', 'step': 4}}
  bad = {'finished': True, 'records': [], 'config': 'x',
         'final': {'status': 'degenerate', 'step': 4,
                   'degenerate_reasons': ['every step was skipped']}}
  inv = results.inventory({'sec4_iid': {0: ok, 1: bad}}, [('sec4_iid', 0), ('sec4_iid', 1)])
  assert inv['sec4_iid']['finished'] == [0, 1]
  assert inv['sec4_iid']['degenerate'] == {1: ['every step was skipped']}
  assert 'degenerate' not in results.inventory({'sec4_iid': {0: ok}}, [])['sec4_iid']


def test_the_loss_of_a_js_trained_estimator_without_target_is_not_its_objective():
  """I_JS and I_SMILE have the estimate's value and the Jensen-Shannon objective's gradient:
  their logged -I_EST need not fall in a run that learns, so it decides nothing there (and a
  reason recorded from it is dropped); with a target, |I_EST - t| must fall."""
  from mi_tf import estimators  # pylint: disable=g-import-not-at-top
  from mi_tf.tasks import mi_maximization  # pylint: disable=g-import-not-at-top
  assert set(study.TRAINED_WITH_ANOTHER_OBJECTIVE) == {
      name for name in study.BOUND_ESTIMATORS
      if estimators.get(name).objective_per_row is not None}
  for name in study.BOUND_ESTIMATORS:
    other = name in study.TRAINED_WITH_ANOTHER_OBJECTIVE
    assert mi_maximization.MIMaximization(estimator=name).train_objective == (
        None if other else 'loss'), name
    assert mi_maximization.MIMaximization(estimator=name, target=4.0).train_objective == 'loss'
  loss = ('the training loss did not fall: -0.8233 in the first log window (step 100), 2901 '
          'in the last (step 20000)')
  final = {'status': 'degenerate', 'step': 20000, 'degenerate_reasons': [loss]}
  js = "MIMaximization.critic = @Bilinear\nMIMaximization.estimator = 'js'\n"
  assert runs_lib.recorded_degenerate_reasons(final, js) is None
  assert runs_lib.recorded_degenerate_reasons(
      final, js + 'MIMaximization.target = 4.0\n') == [loss]
  assert runs_lib.recorded_degenerate_reasons(
      final, js.replace("'js'", "'infonce'")) == [loss]
  unchanged = dict(final, degenerate_reasons=['no trainable weight changed in this session',
                                              loss])
  assert runs_lib.recorded_degenerate_reasons(unchanged, js) == [
      'no trainable weight changed in this session']
  assert runs_lib.recorded_degenerate_reasons({'status': 'ok'}, js) is None
  # The report reads the same: a JS-trained run that learned is not listed as degenerate.
  from mi_tf.report import results  # pylint: disable=g-import-not-at-top
  run = {'finished': True, 'records': [], 'config': js, 'final': final}
  assert 'degenerate' not in results.inventory({'sec3_2_critics_bilinear_js': {0: run}},
                                               [])['sec3_2_critics_bilinear_js']
