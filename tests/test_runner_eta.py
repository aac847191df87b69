"""The runner's ETA: this runs directory's history first, else the measured table that ships
with the package (mi_tf/study_durations.json), and 'not yet timed' only for settings in
neither."""

import io
import json
import shutil

import pytest

from conftest import REPO
from mi_tf import executor
from mi_tf import runs as runs_lib
from mi_tf import study


def test_the_measured_table_times_every_mnist_setting():
  table = runs_lib.measured_durations(with_sources=True)
  assert {s.name for s in study.suite_settings(['mnist'])} <= set(table)
  assert all(v['seconds'] > 0 and v['source'] for v in table.values())
  assert runs_lib.measured_durations()['sec3_1_resmlp'] == table['sec3_1_resmlp']['seconds']
  note = json.loads((REPO / 'mi_tf' / runs_lib.MEASURED_DURATIONS_FILE).read_text())['_note']
  assert '2-core AMD EPYC' in note and '2026-12-01' in note


def test_without_history_the_eta_comes_from_the_measured_table(tmp_path):
  runs = runs_lib.plan(study.suite_settings(['sec4']), 1, tmp_path)
  assert runs_lib.known_durations(runs, tmp_path) == {}  # A new runs directory.
  seconds, unknown, from_table = executor.eta_seconds(runs, {}, lambda r: 1, 2)
  table = runs_lib.measured_durations()
  # Four 1-core runs on 2 cores: half their summed seconds.
  assert seconds == pytest.approx(sum(table[r.setting.name] for r in runs) / 2) and seconds > 0
  assert (unknown, from_table) == (0, 4)
  assert executor.format_eta(seconds, unknown, from_table) == (
      f'{runs_lib.format_duration(seconds)} (4 runs from measured times)')
  # No table: nothing is timed.
  assert executor.eta_seconds(runs, {}, lambda r: 1, 2, measured={}) == (0.0, 4, 0)
  assert executor.format_eta(0.0, 4, 0) == 'unknown (4 run(s) not yet timed)'


def test_history_comes_first_and_untabled_settings_are_not_yet_timed(tmp_path):
  settings = study.suite_settings([], ['sec4_iid,sec3_1_resmlp']) + [
      study.Setting('my_new_setting', gin_files=('gin/sec4_iid.gin',))]
  runs = runs_lib.plan(settings, 1, tmp_path)
  history = {'sec4_iid': 10.0}  # This runs_dir timed it: the table's 545 s is not used.
  seconds, unknown, from_table = executor.eta_seconds(runs, history, lambda r: 2, 2)
  assert seconds == pytest.approx(10.0 + runs_lib.measured_durations()['sec3_1_resmlp'])
  assert (unknown, from_table) == (1, 1)
  assert executor.format_eta(seconds, unknown, from_table).endswith(
      ' (1 run from measured times) + 1 run(s) not yet timed')
  assert executor.format_eta(75.0, 0, 0) == '0:01:15'


def test_the_runners_progress_line_names_the_table(tmp_path):
  """run_all of a new runs directory, without gin bindings (the table is of full-length
  runs): the first progress line has an ETA from the table. The child is `false` (exits at
  once, a recorded failure), so no run is trained."""
  runs = runs_lib.plan(study.suite_settings(['baselines']), 1, tmp_path / 'runs')
  out = io.StringIO()
  summary = executor.run_all(runs, tmp_path / 'runs', REPO, python=shutil.which('false'),
                             out=out, jobs=1, machine=executor.Machine(2, (), 16.0))
  assert len(summary['failed']) == len(runs) >= 2
  first = out.getvalue().splitlines()[1]
  assert first.startswith(f'[1/{len(runs)}] {runs[0].setting.name} seed0 (new)')
  # jobs=1: each run has both cores, so the ETA is the table's seconds of the four, added.
  table = runs_lib.measured_durations()
  eta = runs_lib.format_duration(sum(table[r.setting.name] for r in runs))
  assert first.endswith(f'ETA {eta} ({len(runs)} runs from measured times)'), first
  assert eta != '0:00:00'
  # With gin bindings (shortened runs) the full-length table does not apply.
  out = io.StringIO()
  executor.run_all(runs[:1], tmp_path / 'runs2', REPO, python=shutil.which('false'),
                   gin_bindings=['train.num_steps = 4'], out=out, jobs=1)
  assert 'ETA unknown (1 run(s) not yet timed)' in out.getvalue()
