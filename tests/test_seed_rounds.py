"""More seeds where a claim is INCONCLUSIVE (``reproduce run --decide``, mi_tf.report.seeds).

The rule on synthetic claim results and tables (the real claim functions), and the runner's
rounds end to end on the Sec. 4 settings with an executor that writes each run's metrics as
given values (the loop and its records are under test here, not training).
"""

import json
import pathlib

import pytest

from mi_tf import report
from mi_tf import reproduce
from mi_tf.report import claims
from mi_tf.report import seeds
from mi_tf import study

MI = report.TRUE_MI_SEC4


def _claim(status, checks, n_seeds, protocols=('paper', 'converged', 'knn')):
  out = {'id': 4, 'n_seeds': n_seeds}
  for p in protocols:
    suffix = '' if p == 'paper' else f'_{p}'
    out[f'status{suffix}'] = status
    out[f'checks{suffix}'] = checks
  return out


def test_only_inconclusive_claims_ask_for_the_settings_of_their_unresolved_checks():
  checks = [{'state': 'HOLDS', 'settings': ['a', 'b']},
            {'state': 'UNRESOLVED', 'settings': ['b', 'c']}]
  inconclusive = _claim('INCONCLUSIVE', checks, {'a': 3, 'b': 3, 'c': 3})
  assert claims.undecided_settings(inconclusive) == {p: ['b', 'c'] for p in claims.PROTOCOLS}
  for status in ('PASS', 'FAIL', 'INSUFFICIENT_DATA'):
    assert claims.undecided_settings(_claim(status, checks, {'a': 3})) == {}
  # A bound check names no setting: it stands for every setting the claim read.
  bound = _claim('INCONCLUSIVE', [{'state': 'UNRESOLVED', 'settings': []}], {'x': 3, 'y': 5})
  assert claims.undecided_settings(bound)['paper'] == ['x', 'y']
  # Decided under the paper's probe, undecided under the k-NN probe: the k-NN probe asks.
  mixed = _claim('PASS', checks, {'a': 3})
  mixed['status_knn'] = 'INCONCLUSIVE'
  assert claims.undecided_settings(mixed) == {'knn': ['b', 'c']}


def test_next_round_adds_seeds_up_to_the_maximum_and_stops_there():
  checks = [{'state': 'UNRESOLVED', 'settings': ['b', 'c']}]
  results = [_claim('INCONCLUSIVE', checks, {'b': 5, 'c': 9}),
             dict(_claim('PASS', [{'state': 'HOLDS', 'settings': ['d']}], {'d': 5}), id=6)]
  r = seeds.next_round(results, {'b': 5, 'c': 9, 'd': 5}, max_seeds=10, add=2)
  assert r['counts'] == {'b': 7, 'c': 10}  # c is capped at 10; d's claim is decided.
  assert list(r['claims']) == ['4']
  assert seeds.next_round(results, {'b': 10, 'c': 10}, max_seeds=10, add=2) is None
  assert seeds.next_round(results[1:], {'d': 5}, max_seeds=10, add=2) is None
  with pytest.raises(ValueError, match='at least 1'):
    seeds.next_round(results, {}, 10, 0)


def test_a_partial_plan_keeps_only_the_claims_whose_settings_it_grows():
  # Claim K asks for a (in the plan) and b (not); claim 2 only for x (not in the plan).
  round_ = {'counts': {'a': 5, 'b': 5, 'x': 7},
            'claims': {'K': {'converged': ['a', 'b'], 'knn': ['b']}, '2': {'paper': ['x']}}}
  assert seeds.within_plan(round_, {'a': 3, 'c': 5}) == {
      'counts': {'a': 5}, 'claims': {'K': {'converged': ['a']}}}
  assert seeds.within_plan(round_, {'c'}) is None
  # A round recorded with every asking claim (as runners before the cut wrote it) is reported
  # with the claims that got the seeds only.
  record = {'round': 1, 'date': '2026-12-04T15:00:00', 'seeds_before': {'a': 3},
            'counts': {'a': 5}, 'claims': round_['claims'],
            'verdicts': {'K': {'converged': 'INCONCLUSIVE'}, '2': {'paper': 'INCONCLUSIVE'}}}
  line = seeds.rounds_text([record])[-1]
  assert 'claim K (converged probe INCONCLUSIVE)' in line and 'claim 2' not in line, line
  assert '`a` 3 -> 5' in line, line


def _critics_table(bilinear, concat_seeds=3):
  """Claim 4's six settings: the bilinear accuracies per seed given, the others fixed."""
  acc = report.ACC
  by_setting = {}
  for est in ('infonce', 'nwj'):
    key = 'I_NWJ/test' if est == 'nwj' else 'I_NCE/test'
    for critic in ('bilinear', 'separable', 'concat'):
      values = {'bilinear': bilinear, 'separable': [0.871, 0.872, 0.873],
                'concat': [0.80 + 0.001 * k for k in range(concat_seeds)]}[critic]
      mi = 6.0 if critic == 'concat' else 3.0
      by_setting[f'sec3_2_critics_{critic}_{est}'] = {k: [
          {'step': 20000, 'split': 'eval', 'metric': m, 'value': v}
          for m, v in ((acc, a), ('probe_fast/test_accuracy', a), ('probe_knn/test_accuracy', a),
                       (key, mi + 0.01 * k))] for k, a in enumerate(values)}
  return report.Table(report.aggregate(by_setting))


def test_the_real_claim_asks_for_the_settings_of_the_comparison_it_could_not_decide():
  # With the bilinear seeds spread over 0.70-0.95, "accuracy(bilinear) > accuracy(concat)" is
  # unresolved (z = 0.3); the separable comparisons and the I_NWJ ones are decided.
  spread = _critics_table([0.70, 0.95, 0.82])
  result = claims.claim4(spread)
  assert result['status'] == 'INCONCLUSIVE', result['checks']
  asked = claims.undecided_settings({**result, 'status_converged': 'PASS',
                                     'status_knn': 'PASS'})
  assert asked == {'paper': [f'sec3_2_critics_{c}_{e}' for c in ('bilinear', 'concat')
                             for e in ('infonce', 'nwj')]}, asked
  # Tight seeds: decided, nothing asked (the mutation of the spread flips the outcome).
  tight = claims.claim4(_critics_table([0.880, 0.881, 0.882]))
  assert tight['status'] == 'PASS', tight['checks']
  assert claims.undecided_settings({**tight, 'status_converged': 'PASS',
                                    'status_knn': 'PASS'}) == {}


# ------------------------------------------------------------------ the runner's rounds

# Per seed, I_EST/eval minus the true MI: sec4_noniid is undecided at 3 seeds (z = 0.9) and
# decided at 5 (z = 2.2); the other three are decided at 3.
_DIFFS = {'sec4_noniid': [-0.001, 0.001, 0.003, 0.006, 0.006, 0.006, 0.006],
          'sec4_noniid_nwj': [0.05, 0.051, 0.052, 0.05, 0.05],
          'sec4_iid': [0.0, 0.0001, -0.0001, 0.0, 0.0],
          'sec4_iid_nwj': [-0.0002, 0.0, -0.0001, 0.0, 0.0]}


@pytest.fixture
def fake_executor(monkeypatch):
  """The local executor, replaced by one that writes each unfinished run as finished."""
  calls = []

  def run_all(runs, runs_dir, *args, **kwargs):
    del runs_dir, args, kwargs
    done = []
    for run in runs:
      d = pathlib.Path(run.model_dir)
      if (d / 'final_metrics.json').exists():
        continue
      v = MI + _DIFFS[run.setting.name][run.seed]
      d.mkdir(parents=True, exist_ok=True)
      records = [{'step': s, 'split': 'eval', 'metric': m, 'value': x} for s in (0, 300)
                 for m, x in (('I_EST/eval', v), ('true_mi', MI))]
      (d / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
      (d / 'final_metrics.json').write_text(json.dumps({'step': 300}))
      done.append(run.key)
    calls.append(sorted(done))
    return {'skipped': [], 'completed': done, 'failed': [], 'busy': []}

  monkeypatch.setattr(reproduce.executor, 'run_all', run_all)
  return calls


def test_decide_adds_seeds_to_the_undecided_setting_until_its_claim_is_decided(
    tmp_path, fake_executor, capsys):
  runs_dir = tmp_path / 'runs'
  args = ['run', '--suite=sec4', '--seeds=3', f'--runs_dir={runs_dir}']
  assert reproduce.main(args + ['--decide']) == 0
  # Round 0: the 12 planned runs; round 1: sec4_noniid seeds 3 and 4; then claim 6 passes.
  assert [len(c) for c in fake_executor] == [12, 2]
  assert fake_executor[1] == ['sec4_noniid/seed3', 'sec4_noniid/seed4']
  rounds = json.loads((runs_dir / seeds.ROUNDS_FILE).read_text())
  assert len(rounds) == 1 and rounds[0]['counts'] == {'sec4_noniid': 5}
  assert rounds[0]['seeds_before'] == {'sec4_noniid': 3}
  assert rounds[0]['verdicts']['6']['paper'] == 'INCONCLUSIVE'
  assert 'no more seeds' in capsys.readouterr().out
  table, counts = seeds.finished_table(str(runs_dir))
  assert counts['sec4_noniid'] == 5 and claims.claim6(table)['status'] == 'PASS'

  # A restart with the same command plans the added seeds, runs nothing and adds nothing.
  assert reproduce.main(args + ['--decide']) == 0
  assert fake_executor[2] == [] and len(fake_executor) == 3
  assert len(json.loads((runs_dir / seeds.ROUNDS_FILE).read_text())) == 1
  # status lists the added runs as planned (and finished).
  capsys.readouterr()
  assert reproduce.main(['status', '--suite=sec4', '--seeds=3', f'--runs_dir={runs_dir}']) == 0
  out = capsys.readouterr().out
  assert 'sec4_noniid/seed4' in out and '14 finished' in out
  # The report says which round added them.
  lines = seeds.rounds_text(seeds.read_rounds(str(runs_dir)))
  assert 'sequential' in lines[0]
  assert any('claim 6' in x and '`sec4_noniid` 3 -> 5' in x for x in lines), lines


def test_decide_stops_at_max_seeds_and_a_plain_run_adds_none(tmp_path, fake_executor, capsys):
  runs_dir = tmp_path / 'runs'
  args = ['run', '--suite=sec4', '--seeds=3', f'--runs_dir={runs_dir}']
  assert reproduce.main(args) == 0  # Without --decide: the plan only.
  assert [len(c) for c in fake_executor] == [12]
  assert not (runs_dir / seeds.ROUNDS_FILE).exists()
  assert reproduce.main(args + ['--decide', '--max_seeds=4', '--add_seeds=3']) == 0
  # 3 -> 4 (capped), still undecided at 4 seeds (z = 1.5), and no setting may grow: stop.
  assert fake_executor[1:] == [[], ['sec4_noniid/seed3']]
  rounds = seeds.read_rounds(str(runs_dir))
  assert [r['counts'] for r in rounds] == [{'sec4_noniid': 4}]
  table, _ = seeds.finished_table(str(runs_dir))
  assert claims.claim6(table)['status'] == 'INCONCLUSIVE'


def test_a_damaged_rounds_file_is_one_line_error_and_runs_nothing(tmp_path, fake_executor,
                                                                   capsys):
  runs_dir = tmp_path / 'runs'
  runs_dir.mkdir()
  (runs_dir / seeds.ROUNDS_FILE).write_text('{"round": 1')
  rc = reproduce.main(['run', '--suite=sec4', '--seeds=3', f'--runs_dir={runs_dir}',
                       '--decide'])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and 'seed_rounds.json is not JSON' in err[0], err
  assert fake_executor == []
  assert (runs_dir / seeds.ROUNDS_FILE).read_text() == '{"round": 1'  # Left as it was.


# ------------------------------------------------------------------ the study's phases

def test_phases_run_the_study_in_its_order_each_with_its_seeds(tmp_path, monkeypatch, capsys):
  calls = []

  def run_all(runs, *args, **kwargs):
    del args, kwargs
    calls.append([r.key for r in runs])
    return {'skipped': [], 'completed': [], 'failed': [], 'busy': []}

  monkeypatch.setattr(reproduce.executor, 'run_all', run_all)
  runs_dir = tmp_path / 'runs'
  assert reproduce.main(['run', '--phases', f'--runs_dir={runs_dir}']) == 0
  phases = study.STUDY_PHASES
  assert len(calls) == 1  # One plan, the phases in order: no idle core between phases.
  out = capsys.readouterr().out
  keys_of, start = [], 0
  for i, (name, names, n_seeds) in enumerate(phases, 1):
    said = [x for x in out.splitlines() if x.startswith(f'Phase {i}: {name} (')][0]
    first, last = map(int, said.split('runs ')[1].split(' of')[0].split('-'))
    assert first == start + 1
    keys_of.append(calls[0][start:last])
    start = last
  assert start == len(calls[0]) == len(set(calls[0]))
  keys_of_all = calls[0]
  calls = keys_of
  for (name, names, n_seeds), keys in zip(phases, calls):
    # A setting of an earlier phase (Sec. 3.2) brings only its further seeds here.
    earlier = {n for p in phases[:phases.index((name, names, n_seeds))] for n in p[1]}
    assert {k.split('/')[0] for k in keys} == set(names), name
    for s in names:
      want = min(n_seeds, study.DEFAULT_SETTING_SEEDS.get(s, n_seeds))
      got = sorted((k for k in keys if k.split('/')[0] == s), key=lambda k: int(k[-1]))
      first = 3 if s in earlier else 0
      assert got == [f'{s}/seed{k}' for k in range(first, want)], s
  # App. G first, its MLP-class settings before the ConvNets; the paper's MNIST last, at 5.
  assert calls[0][0].startswith(('baseline_pixels_cifar10', 'cifar10_')) and not any(
      'convnet' in k for k in calls[0])
  assert all('convnet' in k for k in calls[1])
  assert 'sec3_2_critics_bilinear_nwj/seed4' in calls[4]
  assert 'sec3_1_realnvp/seed3' not in calls[4]  # The RealNVP settings stay at 3.
  # status plans the union: a setting in two phases (Sec. 3.2, 3 then 5 seeds) with 5.
  capsys.readouterr()
  runs_dir.mkdir(exist_ok=True)
  assert reproduce.main(['status', '--phases', f'--runs_dir={runs_dir}']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert sum(x.startswith('sec3_2_critics_bilinear_nwj/') for x in lines) == 5
  assert lines[-1].endswith(f' of {len({k for c in calls for k in c})} runs')
  # --dry_run lists the runs in the order they start.
  capsys.readouterr()
  assert reproduce.main(['run', '--phases', '--dry_run', f'--runs_dir={runs_dir}']) == 0
  listed = capsys.readouterr().out.splitlines()
  assert len(listed) == len(keys_of_all)
  assert all(any(f'/{key}{c}' in line + ' ' for c in ' /')
             for key, line in zip(keys_of_all, listed))
  with pytest.raises(SystemExit):
    reproduce.main(['run', '--phases', '--suite=sec4', f'--runs_dir={runs_dir}'])
