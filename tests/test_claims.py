"""Every claim check can fail: tables whose numbers violate a claim as a real failure would.

Each mutation builds per-seed values (3 seeds unless a test says otherwise), aggregates them
as the report does and asserts the verdict is not PASS (FAIL where the claimed ordering is
reversed by more than 2 SE). Also the two probe protocols, the rank correlation and the
smoothing helpers, and what the run loader derives for them.
"""

import json
import math

import numpy as np
import pytest

from mi_tf import report
from mi_tf import study

ACC, FAST = report.ACC, report.ACC_FAST
REC, LOGDET = 'invertibility/max_reconstruction_error', 'invertibility/mean_log_det_jacobian'
LOGCOND = 'jacobian/log_cond_median'
NOISE = (-1.0, 0.2, 0.8)  # Per-seed offsets (mean 0, SD 0.9165) times a setting's noise.


def _table(spec):
  """{setting: {metric: {step: value or [per-seed values]}}} -> Table; a scalar value is
  given to every seed (no spread), a list one value per seed (its length: the seeds)."""
  by_setting = {}
  for setting, curves in spec.items():
    seeds = max([len(v) for c in curves.values() for v in c.values()
                 if isinstance(v, (list, tuple))] or [3])
    for k in range(seeds):
      records = [{'step': step, 'split': 'eval', 'metric': m,
                  'value': (v[k] if isinstance(v, (list, tuple)) else v)}
                 for m, c in curves.items() for step, v in c.items()]
      by_setting.setdefault(setting, {})[k] = records
  return report.Table(report.aggregate(by_setting))


def _noisy(value, sd, seeds=3):
  """Per-seed values around ``value`` with an SD close to ``sd``."""
  offsets = NOISE if seeds == 3 else np.linspace(-1, 1, seeds)
  return [value + sd * o for o in offsets[:seeds]]


def _pixels(seeds=3):
  return {ACC: {0: _noisy(0.848, 0.0005, seeds)}, FAST: {0: _noisy(0.852, 0.0005, seeds)}}


def _realnvp(acc0=0.85, acc1=0.89, sd=0.002, seeds=3, rec=1e-6):
  return {ACC: {0: _noisy(acc0, sd, seeds), 20000: _noisy(acc1, sd, seeds)},
          FAST: {0: _noisy(acc0 + 0.004, sd, seeds), 20000: _noisy(acc1 + 0.004, sd, seeds)},
          'I_EST/test': {0: _noisy(1.0, 0.05, seeds), 10000: _noisy(3.9, 0.05, seeds),
                         20000: _noisy(4.4, 0.05, seeds)},
          REC: {0: 1e-7, 10000: rec, 20000: 1e-6}, LOGDET: {0: 0.0, 10000: 0.0, 20000: 0.0}}


def _claim1_spec(**kwargs):
  return {study.PIXELS: _pixels(), **{study.realnvp_setting(e): _realnvp(**kwargs)
                                      for e in study.ESTIMATORS}}


# ---------------------------------------------------------------- claim 1

def test_claim1_passes_for_an_encoder_that_learns():
  result = report.claim1(_table(_claim1_spec()))
  assert result['status'] == 'PASS', result['checks']


def test_claim1_a_frozen_encoder_does_not_pass():
  # The encoder never learns: final accuracy = step-0 accuracy = pixels + small noise, while
  # I_EST rises (the critic alone can raise it).
  frozen = dict(acc0=0.8485, acc1=0.8487, sd=0.001)
  for acc in (ACC, FAST):
    result = report.claim1(_table(_claim1_spec(**frozen)), acc)
    assert result['status'] == 'INCONCLUSIVE', result['checks']
    states = {c['check'].split(' (')[0]: c['state'] for c in result['checks']}
    assert states[f'{study.realnvp_setting("infonce")}: final I_EST/test > step 0'] == 'HOLDS'
    assert states[f'{study.realnvp_setting("infonce")}: final accuracy > step 0'] == 'UNRESOLVED'


def test_claim1_fails_when_the_reconstruction_error_exceeds_its_tolerance():
  spec = _claim1_spec()
  spec[study.realnvp_setting('nwj')][REC][10000] = [1e-6, 5e-3, 1e-6]  # One seed, one step.
  result = report.claim1(_table(spec))
  assert result['status'] == 'FAIL'
  bad = [c for c in result['checks'] if c['state'] == 'REVERSED']
  assert len(bad) == 1 and 'max |g1^-1(g1(x)) - x|' in bad[0]['check']
  assert 'step 10000' in bad[0]['check']


def test_claim1_without_measured_invertibility_is_insufficient_data():
  spec = _claim1_spec()
  for e in study.ESTIMATORS:
    del spec[study.realnvp_setting(e)][LOGDET]
  result = report.claim1(_table(spec))
  assert result['status'] == 'INSUFFICIENT_DATA'
  assert any(LOGDET in n for n in result['notes'])


# ---------------------------------------------------------------- claim 2

def _claim2_spec(final=0.80, colab=0.45, colab_seeds=1):
  return {study.PIXELS: _pixels(),
          study.ADVERSARIAL: {ACC: {0: _noisy(0.85, 0.003), 4000: _noisy(final, 0.003)},
                              FAST: {0: _noisy(0.86, 0.003), 4000: _noisy(final, 0.003)}},
          study.ADVERSARIAL_COLAB_LR: {
              ACC: {0: _noisy(0.85, 0.003, colab_seeds), 4000: _noisy(colab, 0.003, colab_seeds)}}}


def test_claim2_the_colab_rates_get_their_own_verdict():
  result = report.check_claims(_table(_claim2_spec()))[1]
  assert result['status'] == 'PASS'
  assert result['colab_status'] == 'INCONCLUSIVE'  # One seed.
  assert result['colab_status_converged'] == 'INSUFFICIENT_DATA'  # No converged probe.
  # The Colab setting deciding nothing: its reversal leaves the claim's verdict as it is.
  result = report.claim2(_table(_claim2_spec(colab=0.95, colab_seeds=3)))
  assert (result['status'], result['colab_status']) == ('PASS', 'FAIL')


def test_claim2_an_adversarial_encoder_above_pixels_fails():
  result = report.claim2(_table(_claim2_spec(final=0.87)))
  assert result['status'] == 'FAIL'


# ---------------------------------------------------------------- claim 3

def _resmlp(growth=3.0, steps=(0, 5000, 10000, 15000, 20000)):
  curve = {s: _noisy(growth * s / steps[-1], 0.05) for s in steps}
  return {ACC: {0: _noisy(0.838, 0.002), 20000: _noisy(0.88, 0.002)},
          FAST: {0: _noisy(0.842, 0.002), 20000: _noisy(0.885, 0.002)}, LOGCOND: curve}


def _claim3_spec(**kwargs):
  return {study.PIXELS_NOISY: _pixels(),
          **{study.resmlp_setting(e): _resmlp(**kwargs) for e in study.ESTIMATORS}}


def test_claim3_passes_on_a_steadily_growing_condition_number():
  assert report.claim3(_table(_claim3_spec()))['status'] == 'PASS'


def test_claim3_a_log_condition_number_rising_by_005_does_not_pass():
  result = report.claim3(_table(_claim3_spec(growth=0.05)))
  assert result['status'] == 'FAIL'  # 0.05 - 1 nat is far below 0 in SEs of 0.05 / sqrt(3).
  growth = [c for c in result['checks'] if 'log cond > step 0' in c['check']]
  assert [c['state'] for c in growth] == ['REVERSED'] * 2
  # Rising steadily is not enough: the rank correlation holds, the growth does not.
  steady = [c for c in result['checks'] if 'grows with training' in c['check']]
  assert [c['state'] for c in steady] == ['HOLDS'] * 2


def test_claim3_a_condition_number_that_jumps_and_falls_back_fails_the_rank_check():
  spec = _claim3_spec()
  for e in study.ESTIMATORS:
    curve = spec[study.resmlp_setting(e)][LOGCOND]
    curve[5000], curve[10000], curve[15000] = (_noisy(6.0, 0.05), _noisy(5.0, 0.05),
                                               _noisy(4.0, 0.05))
  result = report.claim3(_table(spec))
  assert result['status'] == 'FAIL'  # Grows by 3 nats from step 0 to the end, not steadily.
  assert any('Spearman 0.00 over 5' in c['check'] for c in result['checks'])


# ---------------------------------------------------------------- claim 4

def _claim4_spec(accs=None, nwj=None):
  accs = accs or {'bilinear': 0.88, 'separable': 0.87, 'concat': 0.80}
  nwj = nwj or {'bilinear': 3.0, 'separable': 3.2, 'concat': 6.0}
  spec = {}
  for est in study.ESTIMATORS:
    for k in study.CRITICS:
      metric = 'I_NWJ/test' if est == 'nwj' else 'I_NCE/test'
      spec[study.critic_setting(k, est)] = {
          ACC: {20000: _noisy(accs[k], 0.004)}, FAST: {20000: _noisy(accs[k] + 0.002, 0.004)},
          metric: {20000: _noisy(nwj[k], 0.1)}}
  return spec


def test_claim4_reversed_orderings_fail():
  assert report.claim4(_table(_claim4_spec()))['status'] == 'PASS'
  # The MLP critic gives the best accuracy (by ~7 SE).
  reversed_acc = {'bilinear': 0.80, 'separable': 0.81, 'concat': 0.85}
  assert report.claim4(_table(_claim4_spec(accs=reversed_acc)))['status'] == 'FAIL'
  # I_NWJ of the MLP critic lowest.
  reversed_nwj = {'bilinear': 6.0, 'separable': 6.5, 'concat': 3.0}
  assert report.claim4(_table(_claim4_spec(nwj=reversed_nwj)))['status'] == 'FAIL'
  # Within the seed noise (1 SE): neither PASS nor FAIL.
  close = {'bilinear': 0.8033, 'separable': 0.8033, 'concat': 0.80}
  assert report.claim4(_table(_claim4_spec(accs=close)))['status'] == 'INCONCLUSIVE'


def test_paper_and_converged_probe_can_disagree():
  # The SAGA probe (stopped early) ranks the critics as the paper does; the converged probe
  # ranks the MLP critic first: the two verdicts differ, and both are reported.
  spec = _claim4_spec()
  for est in study.ESTIMATORS:
    spec[study.critic_setting('concat', est)][FAST] = {20000: _noisy(0.95, 0.004)}
  result = report.check_claims(_table(spec))[3]
  assert (result['status'], result['status_converged']) == ('PASS', 'FAIL')
  assert any(c['state'] == 'REVERSED' for c in result['checks_converged'])
  assert result['probe'] == ACC


# ---------------------------------------------------------------- claim 5

def _claim5_spec(convnet=0.93, mlp=0.86, gap=0.02):
  spec = {}
  for est in study.ESTIMATORS:
    for t in study.TARGETS:
      for enc, acc in (('mlp', mlp), ('convnet', convnet)):
        spec[study.encoder_setting(enc, est, t)] = {
            ACC: {20000: _noisy(acc, 0.004)}, FAST: {20000: _noisy(acc, 0.004)},
            'I_EST/train': {20000: _noisy(t + gap, 0.005)}}
  return spec


def test_claim5_reversed_ordering_fails_and_matching_is_tight():
  assert report.claim5(_table(_claim5_spec()))['status'] == 'PASS'
  assert report.claim5(_table(_claim5_spec(convnet=0.85, mlp=0.90)))['status'] == 'FAIL'
  # 0.06 nats from the target: not matched at the tolerance of 0.05 nats (today's runs are
  # within 0.04), however large the accuracy difference.
  result = report.claim5(_table(_claim5_spec(gap=0.06)))
  assert result['status'] == 'FAIL'
  assert report.MATCH_TOLERANCE == 0.05
  assert all('matched' in c['check'] for c in result['checks'])


# ---------------------------------------------------------------- App. G on CIFAR-10

def _cifar10_spec(pixels=0.24, critics=None, encoders=None, convnet_seeds=3):
  """The App. G settings: the CIFAR-10 pixel baseline, the six critics and the eight encoders
  (each a final accuracy around the given value; the ConvNets with ``convnet_seeds`` seeds)."""
  critics = critics or {'bilinear': 0.34, 'separable': 0.33, 'concat': 0.28}
  encoders = encoders or {'mlp': 0.30, 'convnet': 0.36}
  nwj = {'bilinear': 3.0, 'separable': 3.1, 'concat': 5.0}
  spec = {study.PIXELS_CIFAR10: {ACC: {0: _noisy(pixels, 0.001)},
                                 FAST: {0: _noisy(pixels + 0.004, 0.001)}}}
  for est in study.ESTIMATORS:
    for k in study.CRITICS:
      metric = 'I_NWJ/test' if est == 'nwj' else 'I_NCE/test'
      spec[study.critic_setting(k, est, 'cifar10')] = {
          ACC: {60000: _noisy(critics[k], 0.004)}, FAST: {60000: _noisy(critics[k], 0.004)},
          metric: {60000: _noisy(nwj[k], 0.1)}}
    for t in study.TARGETS:
      for enc in study.ENCODERS:
        seeds = convnet_seeds if enc == 'convnet' else 3
        spec[study.encoder_setting(enc, est, t, 'cifar10')] = {
            ACC: {60000: _noisy(encoders[enc], 0.004, seeds)},
            FAST: {60000: _noisy(encoders[enc], 0.004, seeds)},
            'I_EST/train': {60000: _noisy(t - 0.02, 0.005, seeds)}}
  return spec


def test_claims_4_and_5_on_cifar10_read_the_cifar10_runs_with_the_same_rules():
  spec = _cifar10_spec()
  assert report.claim4_cifar10(_table(spec))['status'] == 'PASS'
  assert report.claim5_cifar10(_table(spec))['status'] == 'PASS'
  # The MNIST claims see none of these runs.
  assert report.claim4(_table(spec))['status'] == 'INSUFFICIENT_DATA'
  assert report.claim5(_table(spec))['status'] == 'INSUFFICIENT_DATA'
  flipped = _cifar10_spec(critics={'bilinear': 0.28, 'separable': 0.29, 'concat': 0.34})
  assert report.claim4_cifar10(_table(flipped))['status'] == 'FAIL'
  flipped = _cifar10_spec(encoders={'mlp': 0.36, 'convnet': 0.30})
  assert report.claim5_cifar10(_table(flipped))['status'] == 'FAIL'
  result = report.claim4_cifar10(_table(spec))
  assert result['id'] == study.CIFAR10_CLAIM_4
  assert set(result['n_seeds']) == set(study.critic_settings('cifar10'))


def test_cifar10_representations_against_the_pixel_baseline():
  # The paper's axes: pixels about 24%, every representation at 26-36%: PASS.
  assert report.claim_pixels_cifar10(_table(_cifar10_spec()))['status'] == 'PASS'
  # A baseline of 32% above the MLP critic's and the MLP encoders' 28-30% (and below the
  # others'): exactly those comparisons are reversed, and the claim fails.
  result = report.claim_pixels_cifar10(_table(_cifar10_spec(pixels=0.32)))
  assert result['status'] == 'FAIL'
  reversed_ = {c['check'].split(':')[0] for c in result['checks'] if c['state'] == 'REVERSED'}
  assert reversed_ == {study.critic_setting('concat', e, 'cifar10') for e in study.ESTIMATORS} | {
      study.encoder_setting('mlp', e, t, 'cifar10') for e in study.ESTIMATORS
      for t in study.TARGETS}
  # Every setting above the pixels, but the ConvNets on one seed each: not PASS.
  result = report.claim_pixels_cifar10(_table(_cifar10_spec(convnet_seeds=1)))
  assert result['status'] == 'INCONCLUSIVE'
  assert report.claim5_cifar10(_table(_cifar10_spec(convnet_seeds=1)))['status'] == 'INCONCLUSIVE'
  # The paper's 24% is reported beside each setting, not decided on.
  assert any('minus the paper' in label for label, _ in result['numbers'])


# ---------------------------------------------------------------- claim 6

def _sec4(iid_offset_se=-1.0, sd=0.0006, noniid=(0.18, 0.097)):
  se = sd * np.std(NOISE, ddof=1) / math.sqrt(3)  # The SE of the mean over the 3 seeds.
  spec = {}
  for est, value in zip(study.ESTIMATORS, noniid):
    spec[study.sec4_setting('noniid', est)] = {
        'I_EST/eval': {20000: _noisy(value, 0.004)}, 'true_mi': {20000: report.TRUE_MI_SEC4}}
    spec[study.sec4_setting('iid', est)] = {
        'I_EST/eval': {20000: _noisy(report.TRUE_MI_SEC4 + iid_offset_se * se, sd)},
        'I_EST/eval_se': {20000: 0.0005}, 'true_mi': {20000: report.TRUE_MI_SEC4}}
  return spec


def test_claim6_iid_estimates_3_se_above_the_true_mi_fail():
  assert report.claim6(_table(_sec4()))['status'] == 'PASS'
  result = report.claim6(_table(_sec4(iid_offset_se=3.0)))
  assert result['status'] == 'FAIL'
  iid = [c for c in result['checks'] if ' i.i.d.' in c['check'] and 'non-' not in c['check']]
  assert [c['state'] for c in iid] == ['REVERSED'] * 2
  assert all('+3.0 SE' in c['check'] for c in iid)
  # 1 SE above: "at or below" within the noise, at the stated precision.
  assert report.claim6(_table(_sec4(iid_offset_se=1.0)))['status'] == 'PASS'


def test_claim6_noniid_estimates_at_the_true_mi_do_not_pass():
  mi = report.TRUE_MI_SEC4
  assert report.claim6(_table(_sec4(noniid=(mi + 0.001, mi))))['status'] != 'PASS'
  assert report.claim6(_table(_sec4(noniid=(mi - 0.02, mi - 0.02))))['status'] == 'FAIL'


# ---------------------------------------------------------------- one seed

@pytest.mark.parametrize('claim_id, spec_fn', [
    (1, _claim1_spec), (2, _claim2_spec), (3, _claim3_spec), (4, _claim4_spec),
    (5, _claim5_spec), (6, _sec4), (study.CIFAR10_CLAIM_4, _cifar10_spec),
    (study.CIFAR10_CLAIM_5, _cifar10_spec), (study.CIFAR10_CLAIM_PIXELS, _cifar10_spec)])
def test_a_claim_decided_on_one_seed_is_never_pass(claim_id, spec_fn):
  spec = spec_fn()
  assert report.claim_function(claim_id)(_table(spec))['status'] == 'PASS'
  # One setting it reads reduced to its first seed (n=1 on a side).
  setting = study.claim_settings()[claim_id][1]
  spec[setting] = {m: {st: ([v[0]] if isinstance(v, list) else [v]) for st, v in c.items()}
                   for m, c in spec[setting].items()}
  table = _table(spec)
  result = report.claim_function(claim_id)(table)
  assert result['n_seeds'][setting] == 1
  assert result['status'] == 'INCONCLUSIVE', result['checks']
  assert any('n=1' in c['check'] and c['state'] == 'UNRESOLVED' for c in result['checks'])


# ---------------------------------------------------------------- helpers

def test_spearman_on_known_inputs():
  assert report.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
  assert report.spearman([1, 2, 3, 4], [5, 3, 2, 0]) == pytest.approx(-1.0)
  assert report.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
  # Ties get their mean rank (scipy.stats.spearmanr gives 0.9486832980505138).
  assert report.spearman([1, 2, 3, 4], [1, 2, 2, 3]) == pytest.approx(0.9486832980505138)
  assert math.isnan(report.spearman([1, 2, 3], [2, 2, 2]))
  assert math.isnan(report.spearman([1], [1]))


def test_gaussian_smoothing_on_known_inputs():
  steps = list(range(0, 1100, 100))
  assert report.gaussian_smooth(steps, [3.0] * len(steps)) == pytest.approx([3.0] * 11)
  impulse = [1.0 if s == 500 else 0.0 for s in steps]
  out = report.gaussian_smooth(steps, impulse, sigma=100)
  weights = [math.exp(-0.5 * k**2) for k in range(-5, 6)]
  assert out[5] == pytest.approx(1 / sum(weights))
  assert out[6] == pytest.approx(math.exp(-0.5) / sum(math.exp(-0.5 * (k - 6) ** 2)
                                                       for k in range(11)), rel=1e-6)
  # A linear curve is kept away from the ends (a symmetric kernel).
  line = report.gaussian_smooth(steps, [0.01 * s for s in steps])
  assert line[5] == pytest.approx(5.0)
  # The smoothing SD is 100 training steps, as the authors' code smooths its estimates.
  assert report.results.SMOOTHING_SIGMA_STEPS == 100
  assert report.gaussian_smooth([], []) == []


def _write(path, name, obj):
  path.mkdir(parents=True, exist_ok=True)
  text = obj if isinstance(obj, str) else (
      ''.join(json.dumps(r) + '\n' for r in obj) if isinstance(obj, list) else json.dumps(obj))
  (path / name).write_text(text)


def test_load_run_reads_the_converged_probe_and_smooths_the_sec4_training_estimate(tmp_path):
  probe = tmp_path / 'baseline_pixels' / 'seed0'
  _write(probe, 'probe_result.json', {'test_accuracy': 0.8482, 'fast_test_accuracy': 0.9201})
  run = report.load_run(probe)
  fast = [r for r in run['records'] if r['metric'] == FAST]
  assert [(r['step'], r['split'], r['value']) for r in fast] == [(0, 'eval', 0.9201)]
  old = tmp_path / 'old' / 'seed0'
  _write(old, 'probe_result.json', {'test_accuracy': 0.8482})
  assert not [r for r in report.load_run(old)['records'] if r['metric'] == FAST]

  toy = tmp_path / 'sec4_iid' / 'seed0'
  train = [{'step': s, 'split': 'train', 'metric': 'I_EST', 'value': 0.02 + (s == 300) * 0.1}
           for s in range(100, 1100, 100)]
  evals = [{'step': 1000, 'split': 'eval', 'metric': 'I_EST/eval', 'value': 0.02}]
  _write(toy, 'metrics.jsonl', train + evals)
  _write(toy, 'config.gin', 'GaussianToy.eval_batches = 100\ntrain.num_steps = 1000\n')
  _write(toy, 'final_metrics.json', {'step': 1000})
  run = report.load_run(toy)
  smooth = {r['step']: r['value'] for r in run['records']
            if r['metric'] == 'I_EST/train_smoothed'}
  assert sorted(smooth) == list(range(100, 1100, 100))
  assert {r['split'] for r in run['records'] if r['metric'] == 'I_EST/train_smoothed'} == {
      'train'}
  assert smooth[1000] == pytest.approx(0.02, abs=1e-12)  # Far from the one spike.
  assert 0.02 < smooth[300] < 0.12 and smooth[400] > smooth[500] > 0.02
  # The final value enters the table although step 1000 is off the 500-step training grid.
  table = report.Table(report.aggregate({'sec4_iid': {0: run['records']}}, train_stride=300))
  assert table.final('sec4_iid', 'I_EST/train_smoothed', split='train')['step'] == 1000
  # Not a Sec. 4 run: nothing derived.
  image = tmp_path / 'sec3_1_resmlp' / 'seed0'
  _write(image, 'metrics.jsonl', train)
  _write(image, 'config.gin', 'train.num_steps = 1000\n')
  assert not [r for r in report.load_run(image)['records']
              if r['metric'] == 'I_EST/train_smoothed']


# ---------------------------------------------------------------- non-default arguments

def test_run_arguments_finds_bindings_beyond_the_setting(tmp_path):
  d = tmp_path / 'sec4_iid' / 'seed0'
  command = ['train.py', '--gin_file=gin/sec4_iid.gin', f'--model_dir={d}', '--seed=0']
  _write(d, 'run_info.json', {'sessions': [{'command': command}]})
  run = {'run_info': json.loads((d / 'run_info.json').read_text()), 'model_dir': str(d)}
  assert report.run_arguments('sec4_iid', 0, run) == []
  run['run_info']['sessions'].append(
      {'command': command + ['--gin_bindings=train.num_steps=300']})
  assert report.run_arguments('sec4_iid', 0, run) == ['--gin_bindings=train.num_steps=300']
  # A probe run has no run_info.json: the runner's log tells.
  p = tmp_path / 'baseline_pixels' / 'seed1'
  _write(p, 'runner.log', f'==== 2026-01-01T00:00:00 python eval_probe.py --pixels --seed=1 '
         f'--output={p}/probe_result.json --n_iter=2\nlog\n')
  assert report.run_arguments('baseline_pixels', 1, {'run_info': None, 'model_dir': str(p)}) == [
      '--n_iter=2']
  _write(p, 'runner.log', f'==== 2026-01-01T00:00:00 python eval_probe.py --pixels --seed=1 '
         f'--output={p}/probe_result.json\n')
  assert report.run_arguments('baseline_pixels', 1, {'run_info': None, 'model_dir': str(p)}) == []


def test_figures_of_flagged_settings_say_so_in_their_title(tmp_path):
  runs_dir = tmp_path / 'runs'
  for k in range(3):
    d = runs_dir / 'sec4_iid' / f'seed{k}'
    command = ['train.py', '--gin_file=gin/sec4_iid.gin', f'--model_dir={d}', f'--seed={k}',
               '--gin_bindings=train.num_steps=300']
    _write(d, 'metrics.jsonl', [{'step': s, 'split': 'eval', 'metric': 'I_EST/eval',
                                 'value': 0.02 + 0.001 * k} for s in (0, 300)])
    _write(d, 'config.gin', 'train.num_steps = 300\n')
    _write(d, 'final_metrics.json', {'step': 300})
    _write(d, 'run_info.json', {'sessions': [{'command': command}]})
  out = tmp_path / 'out'
  result = report.write_report(str(runs_dir), str(out))
  text = (out / 'REPRODUCTION.md').read_text()
  assert '`sec4_iid`: `--gin_bindings=train.num_steps=300`' in text
  # The claims section states the rule and has a column per probe protocol.
  assert '| # | claim | paper probe | converged probe |' in text
  assert '**PASS** = every comparison holds (by >= 2 SE with >= 3 seeds a side)' in text
  assert "Authors' code (Colab) learning rates" in text
  assert '**Claim 6: INSUFFICIENT_DATA (reads no probe).**' in text
  summary = json.loads((out / 'results' / 'summary.json').read_text())
  assert summary['generated']['flags'] == {'sec4_iid': ['--gin_bindings=train.num_steps=300']}
  assert result['figures']['fig4c']
  fig = report.figures.figure_4c(result['table'])
  report.flag_title(fig, {'sec4_iid': ['--gin_bindings=train.num_steps=300']})
  assert 'NON-DEFAULT ARGUMENTS: train.num_steps=300 (sec4_iid)' in fig.get_suptitle()
  assert fig.get_suptitle().startswith('Fig. 4c')


# ---------------------------------------------------------------- figures

def test_figure7_draws_the_testing_loss_in_thousands_of_steps():
  spec = {study.encoder_setting('mlp', 'infonce', 2): {'I_EST/test': {0: 0.0, 4000: 1.7}},
          study.encoder_setting('convnet', 'nwj', 4): {'I_EST/test': {0: 0.0, 4000: 4.3}}}
  fig = report.figures.figure_7(_table(spec))
  left, right = fig.axes[:2]
  assert left.get_xlabel() == 'iteration (thousands)'
  assert list(left.lines[0].get_xdata()) == [0.0, 4.0]
  assert list(left.lines[0].get_ydata()) == pytest.approx([2.0, 0.3])
  assert list(right.lines[0].get_ydata()) == pytest.approx([4.0, 0.3])
  assert 'testing loss' in left.get_ylabel()


def test_figure1c_has_a_panel_per_learning_rate_on_its_own_scale():
  spec = {study.PIXELS: {ACC: {0: 0.848}},
          study.ADVERSARIAL: {ACC: {0: 0.850, 4000: 0.8434}},
          study.ADVERSARIAL_COLAB_LR: {ACC: {0: 0.85, 4000: 0.43}}}
  fig = report.figures.figure_1c(_table(spec))
  paper, colab = fig.axes[:2]
  assert "authors' code (Colab) learning rates" in colab.get_title()
  low, high = paper.get_ylim()
  assert high - low < 2.0  # Percent: the paper-rate change of 0.7 points is visible.
  assert colab.get_ylim()[0] < 45


def test_figure4c_shows_the_difference_to_the_true_mi():
  fig = report.figures.figure_4c(_table(_sec4(iid_offset_se=3.0)))
  diff = fig.axes[1]
  iid = [line for line in diff.lines if 'I_NCE, i.i.d.' in line.get_label()][0]
  se = 0.0006 * np.std(NOISE, ddof=1) / math.sqrt(3)
  assert iid.get_ydata()[-1] == pytest.approx(3 * se, rel=1e-6)
  assert diff.collections  # The +/- 2 SE bands.
