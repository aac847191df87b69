"""The bounds claim (study.BOUNDS_CLAIM: "a tighter bound gives a better representation") and
its figure, on synthetic Tables built as the report builds them: every decided pair of
lower-bound settings is a comparison that can fail, and SMILE never enters one."""


import numpy as np

from mi_tf import report
from mi_tf import study
from mi_tf.report import claims
from mi_tf.report import figures

ACC = report.ACC
NOISE = (-1.0, 0.2, 0.8)  # Per-seed offsets (mean 0), times a setting's SD.


def _table(spec, seeds=3):
  """{setting: {metric: final value}} -> Table of ``seeds`` seeds at steps 0 and 20000, each
  value spread over the seeds (I_EST by 0.05 nats, accuracy by 0.0005)."""
  by_setting = {}
  for setting, values in spec.items():
    for k in range(seeds):
      offset = NOISE[k] if seeds == 3 else float(np.linspace(-1, 1, seeds)[k]) if seeds > 1 else 0
      sd = {ACC: 0.0005, report.ACC_FAST: 0.0005, 'I_EST/test': 0.05, 'I_NWJ/test': 0.05}
      records = [{'step': step, 'split': 'eval', 'metric': m,
                  'value': (v + sd[m] * offset) if step else v - 1.0}
                 for m, v in values.items() for step in (0, 20000)]
      by_setting.setdefault(setting, {})[k] = records
  return report.Table(report.aggregate(by_setting))


def _family():
  """[(estimator, critic, setting)] in the study's order."""
  return [(e, k, study.critic_setting(k, e)) for e in study.BOUND_ESTIMATORS
          for k in study.CRITICS]


def _spec(smile_best_bound=True):
  """Accuracy rises with the bound over the lower-bound settings, well separated; SMILE has
  the highest I_EST and the lowest accuracy (a reversal if it entered a comparison)."""
  spec = {}
  lower = [s for e, _, s in _family() if e not in study.NOT_LOWER_BOUNDS]
  for i, s in enumerate(lower):
    spec[s] = {'I_EST/test': 1.0 + 0.5 * i, ACC: 0.80 + 0.005 * i, 'I_NWJ/test': 0.5 * i - 3}
  for e, _, s in _family():
    if e in study.NOT_LOWER_BOUNDS:
      spec[s] = {'I_EST/test': 50.0 if smile_best_bound else 0.0, ACC: 0.5,
                 'I_NWJ/test': -1e23}
  return spec


def test_accuracy_rising_with_the_bound_passes_and_smile_never_enters():
  result = claims.claim_bounds(_table(_spec()))
  assert result['status'] == 'PASS', [c for c in result['checks'] if c['state'] != 'HOLDS']
  n_lower = sum(e not in study.NOT_LOWER_BOUNDS for e, _, _ in _family())
  assert len(result['checks']) == n_lower * (n_lower - 1) // 2  # Every pair is decided.
  smile = [s for e, _, s in _family() if e in study.NOT_LOWER_BOUNDS]
  assert smile and not any(s in c['check'] for c in result['checks'] for s in smile)
  numbers = dict(result['numbers'])
  assert numbers['Spearman rank correlation of mean I_EST/test with mean accuracy '
                 '(lower bounds; decides nothing)'] == f'1.000 over {n_lower} settings'
  assert numbers['comparisons HOLDS / REVERSED / UNRESOLVED'] == f'{len(result["checks"])} / 0 / 0'
  assert any('not a lower bound' in label for label, _ in result['numbers'])
  assert result['id'] == study.BOUNDS_CLAIM and 'tighter' in result['claim']
  assert set(result) >= {'id', 'claim', 'status', 'checks', 'numbers', 'n_seeds', 'notes'}
  assert all(n == 3 for n in result['n_seeds'].values())


def test_a_reversed_accuracy_ordering_of_one_decided_pair_fails():
  spec = _spec()
  lower = [s for e, _, s in _family() if e not in study.NOT_LOWER_BOUNDS]
  a, b = lower[0], lower[-1]  # The loosest and the tightest bound swap accuracies.
  spec[a][ACC], spec[b][ACC] = spec[b][ACC], spec[a][ACC]
  result = claims.claim_bounds(_table(spec))
  assert result['status'] == 'FAIL'
  reversed_ = [c['check'] for c in result['checks'] if c['state'] == 'REVERSED']
  assert any(c.startswith(f'{b} tighter than {a} ') for c in reversed_)


def test_close_accuracies_are_unresolved_and_an_unordered_bound_pair_makes_no_comparison():
  spec = _spec()
  lower = [s for e, _, s in _family() if e not in study.NOT_LOWER_BOUNDS]
  spec[lower[1]]['I_EST/test'] = spec[lower[0]]['I_EST/test']  # Not ordered: no comparison.
  spec[lower[3]][ACC] = spec[lower[2]][ACC] + 0.0001  # Ordered bounds, accuracies within noise.
  result = claims.claim_bounds(_table(spec))
  assert result['status'] == 'INCONCLUSIVE'
  checks = [c['check'] for c in result['checks']]
  assert not any(c.startswith((f'{lower[1]} tighter than {lower[0]} ',
                               f'{lower[0]} tighter than {lower[1]} ')) for c in checks)
  states = {c['check'].split(' (')[0]: c['state'] for c in result['checks']}
  assert states[f'{lower[3]} tighter than {lower[2]}'] == 'UNRESOLVED'


def test_missing_settings_are_insufficient_data_and_missing_smile_is_not():
  spec = _spec()
  lower = [s for e, _, s in _family() if e not in study.NOT_LOWER_BOUNDS]
  del spec[lower[4]]
  result = claims.claim_bounds(_table(spec))
  assert result['status'] == 'INSUFFICIENT_DATA'
  assert any(lower[4] in note for note in result['notes'])
  spec = {s: v for s, v in _spec().items()
          if s not in [x for e, _, x in _family() if e in study.NOT_LOWER_BOUNDS]}
  assert claims.claim_bounds(_table(spec))['status'] == 'PASS'
  assert claims.claim_bounds(report.Table([]))['status'] == 'INSUFFICIENT_DATA'


def test_one_seed_is_inconclusive_with_a_note():
  result = claims.claim_bounds(_table(_spec(), seeds=1))
  assert result['status'] == 'INCONCLUSIVE' and not result['checks']
  assert any('nothing to compare' in note for note in result['notes'])


def test_the_converged_probe_is_a_protocol_too():
  spec = _spec()
  for values in spec.values():
    values[report.ACC_FAST] = values.pop(ACC)
  for values in spec.values():
    values[ACC] = 0.8  # The SAGA probe says nothing here.
  table = _table({s: {k: v for k, v in values.items()} for s, values in spec.items()})
  assert claims.claim_bounds(table, report.ACC_FAST)['status'] == 'PASS'
  assert claims.claim_bounds(table)['status'] == 'INCONCLUSIVE'


def test_figure_bounds_draws_a_partial_table_and_none_for_an_empty_one():
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  assert figures.figure_bounds(report.Table([])) is None
  spec = {s: v for s, v in _spec().items() if 'concat' not in s}
  spec[study.encoder_setting('mlp', 'dv', study.FAMILY_TARGETS[0])] = {
      'I_EST/test': 3.9, ACC: 0.9, 'I_NWJ/test': 3.5}
  fig = figures.figure_bounds(_table(spec, seeds=2))
  assert fig is not None
  axes = fig.axes
  assert 'I_NWJ' in axes[1].get_xlabel()
  critic_settings = [s for s in spec if s.startswith(study.CRITICS_STUDY)]

  def points(ax):  # The data point of each error bar (one per setting drawn).
    return [(c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in ax.containers]

  for ax, metric in ((axes[0], 'I_EST/test'), (axes[1], 'I_NWJ/test')):
    values = [(spec[s][metric], 100 * spec[s][ACC]) for s in critic_settings]
    marks = [c.lines[0].get_marker() for c in ax.containers]
    drawn = list(zip(points(ax), marks))
    assert len(drawn) == len(critic_settings)
    # Within +/- OFFSCALE_NATS: at their values.
    assert sorted(p for p, m in drawn if m not in '<>') == sorted(
        v for v in values if abs(v[0]) <= figures.OFFSCALE_NATS)
    # A diverged estimate: inside the axis at the edge on its side, its value written there.
    off = [v for v in values if abs(v[0]) > figures.OFFSCALE_NATS]
    low, high = ax.get_xlim()
    assert off and sorted((y, m) for (_, y), m in drawn if m in '<>') == sorted(
        (y, '<' if x < 0 else '>') for x, y in off)
    assert all(low < x < high for (x, _), _ in drawn)
    assert all(x < min(v[0] for v in values if abs(v[0]) <= figures.OFFSCALE_NATS)
               for (x, _), m in drawn if m == '<')
    assert all(x > max(v[0] for v in values if abs(v[0]) <= figures.OFFSCALE_NATS)
               for (x, _), m in drawn if m == '>')
    assert sorted(t.get_text() for t in ax.texts) == sorted(f'{x:.2g}' for x, _ in off)
  assert points(axes[2]) == [(3.9, 90.0)] and 'I_EST' in axes[2].get_xlabel()
  smile = [c for c in axes[0].containers if c.lines[0].get_markerfacecolor() == 'none']
  assert len(smile) == sum(s in critic_settings for e, _, s in _family()
                           if e in study.NOT_LOWER_BOUNDS)  # Hollow: not a lower bound.
  plt.close(fig)
