"""The claims beyond the paper on the metric-learning view (Sec. 4, App. C): claim K (metric-
learning objectives as good as I_NCE) and claim N (more and harder negatives), the k-NN probe
protocol of check_claims and the report's claims table, and their figures. Synthetic tables,
aggregated as the report aggregates runs."""

import math

import pytest

from mi_tf import report
from mi_tf import study
from mi_tf.report import claims
from mi_tf.report import figures
from mi_tf.report import markdown
from mi_tf.report.results import ACC
from mi_tf.report.results import ACC_KNN

NOISE = (-1.0, 0.2, 0.8)  # Per-seed offsets (mean 0, SD 0.92) times a setting's noise.
FINAL = 20000


def _noisy(value, sd, seeds=3):
  offsets = NOISE if seeds == 3 else [0.0] * seeds
  return [value + sd * o for o in offsets[:seeds]]


def _table(spec):
  """{setting: {metric: {step: [per-seed values]}} (optionally {'_split': 'train'} curves as
  (metric, 'train') keys) -> an aggregated Table."""
  by_setting = {}
  for setting, curves in spec.items():
    seeds = max(len(v) for c in curves.values() for v in c.values())
    for k in range(seeds):
      records = []
      for key, c in curves.items():
        metric, split = key if isinstance(key, tuple) else (key, 'eval')
        records += [{'step': step, 'split': split, 'metric': metric, 'value': v[k]}
                    for step, v in c.items()]
      by_setting.setdefault(setting, {})[k] = records
  return report.Table(report.aggregate(by_setting))


# ---------------------------------------------------------------- claim K (metric learning)

def _metric_spec(accs=None, seeds=3, knn=True):
  """Every metric setting at 0.90 (references) / 0.905 (objectives) unless ``accs`` says."""
  accs = accs or {}
  spec = {}
  for enc in study.ENCODERS:
    for obj in study.ESTIMATORS + study.METRIC_OBJECTIVES:
      setting = study.metric_setting(obj, enc)
      value = accs.get((obj, enc), 0.90 if obj in study.ESTIMATORS else 0.905)
      spec[setting] = {ACC: {0: _noisy(0.5, 0.01, seeds), FINAL: _noisy(value, 0.002, seeds)},
                       'I_NCE/test': {FINAL: _noisy(3.0, 0.05, seeds)}}
      if knn:
        spec[setting][ACC_KNN] = {0: _noisy(0.6, 0.01, seeds),
                                  FINAL: _noisy(value + 0.02, 0.002, seeds)}
  return spec


def test_claim_metric_learning_passes_when_every_objective_is_within_a_point():
  # 0.5 points below I_NCE is still "as good" (margin 1 point); I_NWJ far below decides nothing.
  accs = {('kpair_separate', 'mlp'): 0.895, ('nwj', 'mlp'): 0.70, ('nwj', 'convnet'): 0.70}
  result = claims.claim_metric_learning(_table(_metric_spec(accs)))
  assert result['status'] == 'PASS', result['checks']
  assert result['id'] == study.METRIC_CLAIM and result['claim'] == claims.claim_text_metric()
  assert len(result['checks']) == len(study.ENCODERS) * len(study.METRIC_OBJECTIVES)
  assert all('margin -0.01' in c['check'] for c in result['checks'])
  labels = ' '.join(label for label, _ in result['numbers'])
  assert 'I_NWJ reference (not deciding)' in labels and 'triplet' in labels


@pytest.mark.parametrize('obj', study.METRIC_OBJECTIVES)
@pytest.mark.parametrize('enc', study.ENCODERS)
def test_claim_metric_learning_fails_for_an_objective_two_points_worse(obj, enc):
  result = claims.claim_metric_learning(_table(_metric_spec({(obj, enc): 0.88})))
  assert result['status'] == 'FAIL'
  reversed_checks = [c['check'] for c in result['checks'] if c['state'] == 'REVERSED']
  assert len(reversed_checks) == 1 and f'{enc}: accuracy({obj})' in reversed_checks[0]


def test_claim_metric_learning_within_the_seed_noise_of_the_margin_is_inconclusive():
  # 1 point below: exactly at the margin, z = 0.
  result = claims.claim_metric_learning(_table(_metric_spec({('triplet', 'mlp'): 0.89})))
  assert result['status'] == 'INCONCLUSIVE'


def test_claim_metric_learning_missing_and_one_seed():
  spec = _metric_spec()
  del spec[study.metric_setting('kpair_shared', 'convnet')]
  result = claims.claim_metric_learning(_table(spec))
  assert result['status'] == 'INSUFFICIENT_DATA'
  assert study.metric_setting('kpair_shared', 'convnet') in result['notes'][-1]
  # The I_NWJ reference is not needed.
  spec = _metric_spec()
  del spec[study.metric_setting('nwj', 'mlp')]
  assert claims.claim_metric_learning(_table(spec))['status'] == 'PASS'
  one = claims.claim_metric_learning(_table(_metric_spec(seeds=1)))
  assert one['status'] == 'INCONCLUSIVE'
  assert all(c['state'] == 'UNRESOLVED' for c in one['checks'])


# ---------------------------------------------------------------- claim N (negatives)

def _negatives_spec(accs=None, hard=0.89, random=0.87, seeds=3):
  accs = accs or dict(zip(study.NEGATIVES_BATCH_SIZES, (0.82, 0.84, 0.86, 0.87, 0.88, 0.885)))
  spec = {}
  for k, a in accs.items():
    spec[study.negatives_setting(k)] = {
        ACC: {FINAL: _noisy(a, 0.002, seeds)},
        ACC_KNN: {FINAL: _noisy(a + 0.01, 0.002, seeds)},
        'I_NCE/test': {FINAL: _noisy(min(math.log(k), 4.0), 0.02, seeds)},
        ('I_EST', 'train'): {FINAL: _noisy(math.log(k) - 0.3, 0.02, seeds)}}
  for m, a in (('hard', hard), ('random', random)):
    spec[study.mining_setting(m)] = {ACC: {FINAL: _noisy(a, 0.002, seeds)},
                                     'I_NCE/test': {FINAL: _noisy(4.0, 0.02, seeds)}}
  return spec


def test_claim_negatives_passes_on_rising_accuracy_and_better_hard_negatives():
  result = claims.claim_negatives(_table(_negatives_spec()))
  assert result['status'] == 'PASS', result['checks']
  assert [c['state'] for c in result['checks']] == ['HOLDS'] * 3
  assert 'Spearman 1.00 over 6 of 6' in result['checks'][-1]['check']
  assert any('log K' in label and f'{math.log(512):.3f}' in text
             for label, text in result['numbers'])
  assert result['claim'] == claims.claim_text_negatives()


def test_claim_negatives_each_reversal_fails():
  ks = study.NEGATIVES_BATCH_SIZES
  # Fewer negatives better: K = 512 below K = 16 (and the rank correlation reversed).
  falling = dict(zip(ks, (0.885, 0.88, 0.87, 0.86, 0.84, 0.82)))
  result = claims.claim_negatives(_table(_negatives_spec(falling)))
  assert result['status'] == 'FAIL'
  assert [c['state'] for c in result['checks']] == ['REVERSED', 'HOLDS', 'REVERSED']
  # Random negatives beat hard ones.
  result = claims.claim_negatives(_table(_negatives_spec(hard=0.85, random=0.87)))
  assert result['status'] == 'FAIL'
  assert [c['state'] for c in result['checks']] == ['HOLDS', 'REVERSED', 'HOLDS']
  # 512 > 16 holds, but accuracy does not rise with K: the rank bound alone fails it.
  peaked = dict(zip(ks, (0.82, 0.90, 0.89, 0.88, 0.87, 0.86)))
  result = claims.claim_negatives(_table(_negatives_spec(peaked)))
  assert result['status'] == 'FAIL'
  assert [c['state'] for c in result['checks']] == ['HOLDS', 'HOLDS', 'REVERSED']


def test_claim_negatives_missing_and_one_seed():
  spec = _negatives_spec()
  del spec[study.negatives_setting(64)]
  result = claims.claim_negatives(_table(spec))
  assert result['status'] == 'INSUFFICIENT_DATA'
  assert result['checks'][-1]['state'] == 'UNRESOLVED'  # 5 of 6 batch sizes: no decision.
  spec = _negatives_spec()
  del spec[study.mining_setting('hard')]
  assert claims.claim_negatives(_table(spec))['status'] == 'INSUFFICIENT_DATA'
  one = claims.claim_negatives(_table(_negatives_spec(seeds=1)))
  # The rank bound holds on one seed too, but the two comparisons cannot: never PASS.
  assert one['status'] == 'INCONCLUSIVE'
  assert [c['state'] for c in one['checks']] == ['UNRESOLVED', 'UNRESOLVED', 'HOLDS']


def test_the_new_claims_under_the_knn_protocol():
  spec = _metric_spec({('triplet', 'convnet'): 0.88})
  for setting in (study.metric_setting('triplet', 'convnet'),):
    spec[setting][ACC_KNN] = {FINAL: _noisy(0.925, 0.002)}  # k-NN: as good as I_NCE's.
  table = _table(spec)
  assert claims.claim_metric_learning(table)['status'] == 'FAIL'
  knn = claims.claim_metric_learning(table, ACC_KNN)
  assert knn['status'] == 'PASS' and knn['probe'] == ACC_KNN
  assert claims.claim_negatives(_table(_negatives_spec()), ACC_KNN)['status'] == (
      'INSUFFICIENT_DATA')  # The mining runs have no k-NN accuracy here.


# ---------------------------------------------------------------- k-NN protocol of the report

def _claim4_spec(knn_accs=None):
  accs = {'bilinear': 0.88, 'separable': 0.87, 'concat': 0.80}
  spec = {}
  for est in study.ESTIMATORS:
    for k in study.CRITICS:
      metric = 'I_NWJ/test' if est == 'nwj' else 'I_NCE/test'
      spec[study.critic_setting(k, est)] = {
          ACC: {FINAL: _noisy(accs[k], 0.004)},
          metric: {FINAL: _noisy({'concat': 6.0}.get(k, 3.0), 0.1)}}
      if knn_accs:
        spec[study.critic_setting(k, est)][ACC_KNN] = {FINAL: _noisy(knn_accs[k], 0.004)}
  return spec


def test_check_claims_decides_every_probe_claim_with_the_knn_probe_too():
  assert claims.PROTOCOLS == {'paper': ACC, 'converged': report.ACC_FAST, 'knn': ACC_KNN}
  table = _table(_claim4_spec({'bilinear': 0.80, 'separable': 0.81, 'concat': 0.90}))
  results = {r['id']: r for r in claims.check_claims(table)}
  assert (results[4]['status'], results[4]['status_knn']) == ('PASS', 'FAIL')
  assert any(c['state'] == 'REVERSED' for c in results[4]['checks_knn'])
  assert results[4]['status_converged'] == 'INSUFFICIENT_DATA'  # No converged probe here.
  # Claim 6 reads no probe: its verdict in every column.
  assert results[6]['status_knn'] == results[6]['status'] and results[6]['probe'] is None
  # Runs without the k-NN probe: INSUFFICIENT_DATA in its column, not an error.
  old = {r['id']: r for r in claims.check_claims(_table(_claim4_spec()))}
  assert (old[4]['status'], old[4]['status_knn']) == ('PASS', 'INSUFFICIENT_DATA')


def _render(claim_results, table=None):
  table = table or _table(_claim4_spec())
  info = {'machine': {'cpu_cores': 2, 'cpu': 'cpu', 'platform': 'linux', 'python': '3',
                      'gpus': 0},
          'date': 'today', 'command': 'report', 'commit': 'abc', 'runs_dir': 'runs',
          'steps': {}, 'wall': {}}
  return markdown.render_markdown(table, claim_results, {}, {}, {}, info)


def test_the_claims_table_has_a_knn_column():
  table = _table(_claim4_spec({'bilinear': 0.80, 'separable': 0.81, 'concat': 0.90}))
  text = _render(claims.check_claims(table))
  assert ('| # | claim | paper probe | converged probe | k-NN (k = 20) | comparisons (paper '
          'probe) | seeds |') in text
  row4 = next(line for line in text.splitlines() if line.startswith('| 4 |'))
  assert '| **PASS** | **INSUFFICIENT_DATA** | **FAIL** |' in row4
  assert '**Claim 4: PASS (paper probe); INSUFFICIENT_DATA (converged probe); FAIL (k-NN ' \
         'probe).**' in text
  assert '- k-NN probe comparisons: REVERSED' in text
  # A claim result without k-NN keys (an earlier report's summary) renders INSUFFICIENT_DATA.
  legacy = [{k: v for k, v in r.items() if not k.endswith('_knn')}
            for r in claims.check_claims(table)]
  row4 = next(line for line in _render(legacy).splitlines() if line.startswith('| 4 |'))
  assert '| **PASS** | **INSUFFICIENT_DATA** | **INSUFFICIENT_DATA** |' in row4


# ---------------------------------------------------------------- figures

def test_figure_metric_draws_with_partial_and_empty_tables():
  assert figures.figure_metric(report.Table([])) is None
  spec = _metric_spec()
  for setting in list(spec)[::2]:
    del spec[setting]
  fig = figures.figure_metric(_table(spec))
  ax = fig.axes[0]
  assert len(ax.patches) == len(spec)  # One bar per setting with data.
  assert ax.get_xlabel() == 'encoder' and fig.get_suptitle().startswith('Beyond the paper')
  labels = ax.get_legend_handles_labels()[1]
  assert 'k-NN probe (k = 20)' in labels
  heights = sorted(round(p.get_height(), 3) for p in ax.patches)
  assert heights[-1] == pytest.approx(90.5, abs=0.05)
  # Without the k-NN accuracies: bars only.
  fig = figures.figure_metric(_table(_metric_spec(knn=False)))
  assert 'k-NN probe (k = 20)' not in fig.axes[0].get_legend_handles_labels()[1]


def test_figure_negatives_draws_with_partial_and_empty_tables():
  assert figures.figure_negatives(report.Table([])) is None
  spec = _negatives_spec()
  del spec[study.negatives_setting(32)], spec[study.mining_setting('random')]
  fig = figures.figure_negatives(_table(spec))
  left, right = fig.axes[:2]
  assert left.get_xscale() == 'log' and right.get_xscale() == 'log'
  labels = left.get_legend_handles_labels()[1]
  assert any(label.startswith('hard 127 of 511') for label in labels)
  assert not any(label.startswith('random') for label in labels)
  assert 'log K' in right.get_legend_handles_labels()[1]
  # Only the mining runs: still drawn.
  mining = [study.mining_setting(m) for m in study.MINING]
  only = {s: v for s, v in _negatives_spec().items() if s in mining}
  assert figures.figure_negatives(_table(only)) is not None


def test_the_final_values_table_has_a_knn_column():
  table = _table(_claim4_spec({'bilinear': 0.80, 'separable': 0.81, 'concat': 0.90}))
  lines = _render([], table).splitlines()
  header = next(line for line in lines if line.startswith('| setting | seeds | steps |'))
  cells = [c.strip() for c in header.strip('|').split('|')]
  column = cells.index('k-NN probe (step 0 -> final)')
  setting = study.critic_setting('concat', 'nwj')
  row = next(line for line in lines if line.startswith(f'| {setting} |'))
  knn = table.final(setting, ACC_KNN)
  assert knn['n'] >= 3
  assert [c.strip() for c in row.strip('|').split('|')][column] == (
      f'{100 * knn["mean"]:.2f} ± {100 * knn["sd"]:.2f} % (n={knn["n"]})')
  # Runs without the k-NN probe leave the cell empty.
  row = next(line for line in _render([]).splitlines() if line.startswith(f'| {setting} |'))
  assert [c.strip() for c in row.strip('|').split('|')][column] == ''
