"""The staircase of known MI for the family of estimators (scripts/plot_staircase.py
--family): the bias/variance JSON and the figure, on a tiny schedule; ``level_summary``."""

import importlib.util
import json
import math

import numpy as np
import pytest

from conftest import REPO
from mi_tf import staircase


def _script():
  spec = importlib.util.spec_from_file_location('plot_staircase',
                                                REPO / 'scripts' / 'plot_staircase.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_level_summary_is_the_bias_and_plain_variance_of_each_level_s_last_half():
  run = {'true_mi': staircase.mi_schedule((2, 4), 4),
         'estimate': np.array([0.0, 9.0, 1.0, 2.0, 3.0, 3.5, np.inf, 5.0])}
  first, second = staircase.level_summary(run)
  assert first['mi'] == 2.0 and first['n'] == 2 and first['n_nonfinite'] == 0
  assert first['mean'] == pytest.approx(1.5) and first['bias'] == pytest.approx(-0.5)
  assert first['variance'] == pytest.approx(0.5)  # var([1, 2], ddof=1)
  # The inf is left out and counted; one finite estimate has no variance.
  assert second['n'] == 1 and second['n_nonfinite'] == 1
  assert second['bias'] == pytest.approx(1.0) and math.isnan(second['variance'])


def test_family_staircase_writes_finite_bias_and_variance_and_the_figure(tmp_path):
  png, out = tmp_path / 'figures' / 'family.png', tmp_path / 'results' / 'family.json'
  argv = ['--family', '--estimators=infonce,dv', '--steps_per_level=6', '--batch_size=16',
          f'--output={png}', f'--json={out}']
  assert _script().main(argv) == 0
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  record = json.loads(out.read_text())
  assert record['command'] == 'python scripts/plot_staircase.py ' + ' '.join(argv)
  assert record['steps_per_level'] == 6 and record['true_mi_levels'] == [2, 4, 6, 8, 10]
  assert 'plain variance' in record['variance'] and record['seconds'] > 0
  assert sorted(record['results']) == ['dv', 'infonce']
  for name in ('infonce', 'dv'):
    assert sorted(record['results'][name]) == ['concat', 'separable']
    for critic, entry in record['results'][name].items():
      assert entry['seconds'] > 0
      assert [lv['mi'] for lv in entry['levels']] == [2, 4, 6, 8, 10]
      for lv in entry['levels']:
        assert lv['n'] == 3 and lv['n_nonfinite'] == 0, (name, critic)
        for key in ('bias', 'variance', 'mean', 'sd'):
          assert math.isfinite(lv[key]), (name, critic, key)
        assert lv['bias'] == pytest.approx(lv['mean'] - lv['mi'])
        if name == 'infonce':  # Never above log B.
          assert lv['mean'] <= math.log(16) + 1e-5
  assert not list(tmp_path.rglob('.tmp-*'))  # Atomic writes leave no temporary file.


def test_family_staircase_refuses_an_unknown_estimator_before_training(tmp_path):
  with pytest.raises(ValueError, match='Unknown estimator'):
    _script().main(['--family', '--estimators=infonce,nope', f'--json={tmp_path / "x.json"}',
                    f'--output={tmp_path / "x.png"}'])
  assert not list(tmp_path.iterdir())


def test_train_on_samples_learns_on_a_fixed_sample_and_evaluates_held_out_pairs():
  """The loop scripts/bmi_tasks.py trains with: fixed Gaussian pairs of MI 2 (dim 20)."""
  from mi_tf import validation  # pylint: disable=g-import-not-at-top
  rho = validation.rho_for_mi(2.0, 20)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1024, 20))
  y = rho * x + np.sqrt(1 - rho ** 2) * rng.normal(size=x.shape)
  model, trace, curve = staircase.train_on_samples(
      x[:512], y[:512], 'separable', 'infonce', num_steps=60, batch_size=64,
      learning_rate=2e-3, test=(x[512:], y[512:]), eval_every=20)
  assert trace.shape == (60,) and [s for s, _ in curve] == [20, 40, 60]
  # It learns: the first training estimates are near 0, every held-out I_NCE (512 pairs)
  # well above them.
  assert np.mean(trace[:5]) < 0.3 < min(v for _, v in curve)
  assert curve[-1][1] == pytest.approx(
      staircase.estimate_on_samples(model, 'infonce', x[512:], y[512:]), abs=1e-6)
  blocks = staircase.estimate_on_samples(model, 'infonce', x[512:], y[512:], block_size=64)
  assert blocks <= math.log(64) + 1e-6 < curve[-1][1] + math.log(512)  # Each block <= log 64.
  with pytest.raises(ValueError, match='batch_size 2000 > the 512 samples'):
    staircase.train_on_samples(x[:512], y[:512], num_steps=1, batch_size=2000)
