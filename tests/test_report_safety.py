"""A report never destroys results: refusals, partial suites, stopped writes, one-line errors.

On a copy of the repository's committed report (REPRODUCTION.md, results/, figures/: 78 runs)
and tiny synthetic run directories; no training.
"""

import csv
import datetime
import json
import os
import pathlib
import shutil
import types

import pytest

from mi_tf import report
from mi_tf import reproduce
from mi_tf import runs as runs_lib
from mi_tf import study

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = ('REPRODUCTION.md', 'results', 'figures')
SEC4 = ('sec4_iid', 'sec4_iid_nwj', 'sec4_noniid', 'sec4_noniid_nwj')


@pytest.fixture
def out(tmp_path):
  """A copy of the committed report (the repository's default --output_dir)."""
  d = tmp_path / 'out'
  d.mkdir()
  for name in COMMITTED:
    src = REPO / name
    if src.is_dir():  # Not results/study/: the study's runs (an input of the report).
      shutil.copytree(src, d / name, ignore=shutil.ignore_patterns('study'))
    else:
      (d / name).write_bytes(src.read_bytes())
  return d


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch):
  """The report's date, fixed: two reports of the same runs are then byte-identical."""

  class _Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
      return cls(2026, 1, 2, 3, 4, 5)

  monkeypatch.setattr(report, 'datetime', types.SimpleNamespace(datetime=_Frozen))


def _snapshot(d):
  """{relative path: bytes} of every file under d."""
  return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}


def _write_runs(runs_dir, setting, seeds, value=0.0205):
  """Finished Sec. 4-like runs: I_EST/eval and true_mi at steps 0 and 300."""
  for k in range(seeds):
    d = runs_dir / setting / f'seed{k}'
    d.mkdir(parents=True)
    records = [{'step': s, 'split': 'eval', 'metric': m, 'value': v}
               for s in (0, 300) for m, v in (('I_EST/eval', value + 1e-4 * k),
                                              ('true_mi', report.TRUE_MI_SEC4))]
    (d / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    (d / 'config.gin').write_text(f'train.seed = {k}\n')
    (d / 'run_info.json').write_text(json.dumps({'seed': k, 'sessions': [{'host': 'h'}]}))
    (d / 'final_metrics.json').write_text(json.dumps(
        {'step': 300, 'wall_seconds_this_session': 30.0}))


def _rows(path, keep=lambda setting: True):
  """The CSV rows (as lists of strings, header left out) of the settings ``keep`` accepts."""
  with open(path, newline='') as f:
    return [r for r in list(csv.reader(f))[1:] if keep(r[0])]


def _main(capsys, *args):
  """(exit status, stderr lines) of the runner's command line, in this process."""
  rc = reproduce.main(list(args) + ['--tensorboard_dir=none'] * (args[0] == 'report'))
  return rc, capsys.readouterr().err.strip().splitlines()


def test_a_report_of_an_empty_runs_dir_refuses_and_writes_nothing(tmp_path, out, capsys):
  empty = tmp_path / 'runs'
  empty.mkdir()
  before = _snapshot(out)
  assert sum(len(e['finished']) for e in json.loads(
      (out / 'results' / 'summary.json').read_text())['inventory'].values()) == 78
  for suite, says in (('sec4', 'would hold 66; fewer in 4 setting(s): sec4_iid 3 -> 0, '),
                      ('mnist', 'would hold 0; fewer in 28 setting(s): ')):
    rc, err = _main(capsys, 'report', f'--suite={suite}', '--seeds=2', f'--runs_dir={empty}',
                    f'--output_dir={out}')
    assert rc == 2 and len(err) == 1, err
    assert 'holds 78 finished runs' in err[0] and says in err[0], err
    assert 'Nothing was written' in err[0] and '--output_dir' in err[0]
    assert '--allow_fewer_runs' in err[0]
    assert _snapshot(out) == before
  assert ', and 24 more.' in err[0]
  # The library call refuses the same way.
  plan = runs_lib.plan(study.suite_settings(['sec4']), 3, empty)
  with pytest.raises(report.FewerRuns, match='this one would hold 66'):
    report.write_report(str(empty), str(out), plan)
  assert _snapshot(out) == before

  # Allowed: the Sec. 4 part is replaced (nothing left of it), every other suite's part kept.
  rc, err = _main(capsys, 'report', '--suite=sec4', '--seeds=2', f'--runs_dir={empty}',
                  f'--output_dir={out}', '--allow_fewer_runs')
  assert rc == 0, err
  after = _snapshot(out)
  assert 'figures/fig4c.png' in before and 'figures/fig4c.png' not in after  # Sec. 4's own.
  others = [k for k in before if k.startswith('figures/') and k != 'figures/fig4c.png']
  # The other report figures (fig*.png: 12 in the committed report, Figs. 1a-7 of the first
  # study's MNIST report and Figs. 8, 9 of App. G) and every other file of figures/ (e.g. the
  # staircase plots, which no report draws) are left as they were.
  assert len([k for k in others if k.startswith('figures/fig')]) == 12
  assert all(after[k] == before[k] for k in others)
  not_sec4 = lambda s: s not in SEC4
  old_rows = _rows(REPO / 'results' / 'curves.csv', not_sec4)
  assert old_rows and _rows(out / 'results' / 'curves.csv') == old_rows
  summary = json.loads((out / 'results' / 'summary.json').read_text())
  old = json.loads((REPO / 'results' / 'summary.json').read_text())
  assert {s: e for s, e in summary['inventory'].items() if s not in SEC4} == {
      s: e for s, e in old['inventory'].items() if s not in SEC4}
  assert summary['inventory']['sec4_iid'] == {'planned': [0, 1], 'finished': [],
                                              'partial': {}, 'missing': [0, 1]}
  assert summary['final_values']['baseline_pixels'] == old['final_values']['baseline_pixels']
  assert 'sec4_iid' not in summary['final_values']
  assert summary['figures']['fig4c'] is None and summary['figures']['fig1a'] == 'figures/fig1a.png'
  text = (out / 'REPRODUCTION.md').read_text()
  assert 'Runs: 66 of 74 planned runs finished' in text
  assert f'Kept as the report of {old["generated"]["date"]}' in text and '`baseline_pixels`' in text


def test_a_partial_suite_updates_its_settings_and_keeps_the_others(tmp_path, out, capsys):
  runs_dir = tmp_path / 'runs'
  _write_runs(runs_dir, 'sec4_iid', 2)
  before = _snapshot(out)
  rc, err = _main(capsys, 'report', '--settings=sec4_iid', '--seeds=2', f'--runs_dir={runs_dir}',
                  f'--output_dir={out}')
  assert rc == 2 and len(err) == 1 and 'fewer in 1 setting(s): sec4_iid 3 -> 2' in err[0], err
  assert 'holds 78 finished runs' in err[0] and 'would hold 77' in err[0]
  assert _snapshot(out) == before

  (runs_dir / 'sec4_iid').rename(tmp_path / 'two')
  _write_runs(runs_dir, 'sec4_iid', 3, value=0.03)
  rc, err = _main(capsys, 'report', '--settings=sec4_iid', '--seeds=3', f'--runs_dir={runs_dir}',
                  f'--output_dir={out}')
  assert rc == 0, err
  after = _snapshot(out)
  # Only the one figure that reads sec4_iid is redrawn; the others are the committed ones.
  changed = {k for k in before if after.get(k) != before[k]}
  assert changed == {'figures/fig4c.png', 'results/curves.csv', 'results/summary.json',
                     'REPRODUCTION.md'}
  rows = _rows(out / 'results' / 'curves.csv')
  assert [r for r in rows if r[0] != 'sec4_iid'] == _rows(REPO / 'results' / 'curves.csv',
                                                          lambda s: s != 'sec4_iid')
  final = [r for r in rows if r[:4] == ['sec4_iid', 'eval', 'I_EST/eval', '300']]
  assert len(final) == 1 and final[0][4] == '3' and float(final[0][5]) == pytest.approx(0.0301)
  summary = json.loads((out / 'results' / 'summary.json').read_text())
  assert summary['inventory']['sec4_iid']['finished'] == [0, 1, 2]
  assert summary['final_values']['sec4_iid']['I_EST/eval']['mean'] == pytest.approx(0.0301)
  assert len(summary['generated']['kept_from']) == 27
  assert summary['generated']['steps']['sec4_iid'] == '300'
  assert summary['generated']['steps']['baseline_pixels'] == '0'
  # Claim 6 is decided again on the merged table: the i.i.d. estimate is now far above.
  claim6 = [c for c in summary['claims'] if c['id'] == 6][0]
  assert claim6['n_seeds'] == {'sec4_iid': 3, 'sec4_iid_nwj': 3, 'sec4_noniid': 3,
                               'sec4_noniid_nwj': 3}
  assert claim6['status'] == 'FAIL'
  text = (out / 'REPRODUCTION.md').read_text()
  assert 'Runs: 78 of 78 planned runs finished' in text
  assert 'Kept as the report of ' in text and '`sec4_iid`' not in text.split('Machine:')[0]
  # Reporting the same runs again changes nothing (the merge is idempotent).
  report.write_report(str(runs_dir), str(out), command='again')
  first = _snapshot(out)
  report.write_report(str(runs_dir), str(out), command='again')
  assert _snapshot(out) == first


def test_a_report_stopped_at_any_write_leaves_every_file_old_or_new(tmp_path, out, monkeypatch):
  runs_dir = tmp_path / 'runs'
  _write_runs(runs_dir, 'sec4_iid', 3, value=0.03)
  old = _snapshot(out)
  report.write_report(str(runs_dir), str(out), command='c')
  new = _snapshot(out)
  targets = sorted(k for k in new if new[k] != old.get(k))
  assert set(targets) == {'figures/fig4c.png', 'results/curves.csv', 'results/summary.json',
                          'REPRODUCTION.md'}
  real_replace = os.replace
  for k in range(1, len(targets) + 1):
    for rel, data in old.items():
      (out / rel).write_bytes(data)
    calls = []

    def replace(src, dst, k=k, calls=calls):
      calls.append(dst)
      if len(calls) == k:
        raise KeyboardInterrupt(f'stopped before the rename of {dst}')
      return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', replace)
    with pytest.raises(KeyboardInterrupt):
      report.write_report(str(runs_dir), str(out), command='c')
    monkeypatch.setattr(os, 'replace', real_replace)
    now = {rel: (out / rel).read_bytes() for rel in targets}
    assert all(now[rel] in (old[rel], new[rel]) for rel in targets), k
    assert sum(now[rel] == new[rel] for rel in targets) == k - 1  # Those before the stop.
  # The report, started again, completes from what the last stop left (all but summary.json).
  report.write_report(str(runs_dir), str(out), command='c')
  assert {rel: (out / rel).read_bytes() for rel in targets} == {r: new[r] for r in targets}


@pytest.mark.parametrize('cmd', ['status', 'report'])
def test_a_runs_dir_that_is_a_file_or_missing_is_one_line(tmp_path, out, capsys, cmd):
  a_file = tmp_path / 'runs.txt'
  a_file.write_text('not a directory\n')
  before = _snapshot(out)
  for runs_dir, says in ((a_file, 'is a file, not a directory'), (tmp_path / 'nope',
                                                                   'does not exist')):
    rc, err = _main(capsys, cmd, '--suite=sec4', f'--runs_dir={runs_dir}',
                    f'--output_dir={out}' if cmd == 'report' else '--seeds=1')
    assert rc != 0 and len(err) == 1 and says in err[0] and 'Traceback' not in err[0], err
    assert err[0].startswith(f'python -m mi_tf.reproduce {cmd}: error: --runs_dir ')
  with pytest.raises(reproduce.UsageError, match='is a file'):
    reproduce.main([cmd, '--suite=sec4', f'--runs_dir={a_file}', '--verbose'])
  assert _snapshot(out) == before


def test_other_command_line_errors_are_one_line(tmp_path, out, capsys):
  runs_dir = tmp_path / 'runs'
  runs_dir.mkdir()
  a_file = out / 'REPRODUCTION.md'
  for args, says in (
      (['report', f'--output_dir={a_file}'], '--output_dir '),
      (['run', '--dry_run', f'--runs_dir={a_file}'], 'is a file'),
      (['status', '--setting_seeds=sec4_iid'], 'is not NAME=N'),
      (['status', '--setting_seeds=sec4_iidd=3'], "Unknown setting(s) ['sec4_iidd']")):
    args = args + ['--suite=sec4'] + ([f'--runs_dir={runs_dir}'] * (
        not any(a.startswith('--runs_dir') for a in args)))
    rc, err = _main(capsys, *args)
    assert rc == 2 and len(err) == 1 and says in err[0], (args, err)


def test_an_unreadable_or_markdown_only_report_is_not_replaced_silently(tmp_path, out):
  empty = tmp_path / 'runs'
  empty.mkdir()
  (out / 'results' / 'summary.json').write_text('{"inventory": ')  # Cut short.
  with pytest.raises(report.ReportError, match='summary.json is unreadable'):
    report.write_report(str(empty), str(out))
  # Without results/, REPRODUCTION.md's generated section still tells how many runs it holds.
  shutil.rmtree(out / 'results')
  before = _snapshot(out)
  with pytest.raises(report.FewerRuns, match=r'holds 78 finished runs \(by its REPRODUCTION'):
    report.write_report(str(empty), str(out))
  assert _snapshot(out) == before
  report.write_report(str(empty), str(out), allow_fewer_runs=True)
  assert 'Runs: 0 of 0 planned runs' in (out / 'REPRODUCTION.md').read_text()
