"""The study as data: every name the report reads is a setting, and the report spells none."""

import ast
import pathlib
import re
import subprocess
import sys

from conftest import GIN_DIR, REPO
from mi_tf import study

REPORT_DIR = REPO / 'mi_tf' / 'report'
# A setting name, or the start of one, as the study builds them.
_NAME_LIKE = re.compile(r'(sec\d_\d?|baseline_|cifar10_)')


def _is_setting(name):
  return name in study.PROBE_BASELINES or (GIN_DIR / f'{name}.gin').is_file()


def test_every_setting_a_claim_or_figure_reads_is_a_setting_of_the_study():
  read = {n for names in study.claim_settings().values() for n in names}
  read |= {n for names in study.figure_settings().values() for n in names}
  assert sorted(n for n in read if not _is_setting(n)) == []
  beyond = set(study.SUITES['bounds']) | set(study.SUITES['metric'])
  assert read <= set(study.MNIST_SETTINGS) | set(study.CIFAR10_SETTINGS) | beyond
  assert list(study.claim_settings()) == list(study.CLAIM_IDS)
  # The CIFAR-10 claims and figures read CIFAR-10 settings only, the others MNIST ones only.
  cifar = {study.CIFAR10_CLAIM_4, study.CIFAR10_CLAIM_5, study.CIFAR10_CLAIM_PIXELS}
  for claim_id, names in study.claim_settings().items():
    assert set(names) <= set(study.CIFAR10_SETTINGS if claim_id in cifar
                             else set(study.MNIST_SETTINGS) | beyond), claim_id
  for name, names in study.figure_settings().items():
    assert set(names) <= set(study.CIFAR10_SETTINGS if name in ('fig8', 'fig9')
                             else set(study.MNIST_SETTINGS) | beyond), name
  # The beyond-the-paper claims read their own suites and the paper's settings they compare
  # with (the Sec. 3.2 InfoNCE and NWJ runs), nothing of CIFAR-10.
  for claim_id in (study.BOUNDS_CLAIM, study.METRIC_CLAIM, study.NEGATIVES_CLAIM):
    names = set(study.claim_settings()[claim_id])
    assert names & beyond and not names & set(study.CIFAR10_SETTINGS), claim_id


def test_every_suite_setting_is_a_gin_file_or_a_probe_baseline():
  names = {n for suite in study.SUITES.values() for n in suite}
  assert sorted(n for n in names if not _is_setting(n)) == []
  assert set(study.DEFAULT_SETTING_SEEDS) <= names
  assert set(study.PROBE_BASELINES) <= names


def _string_literals(path):
  """(line, text) of every string constant of a module but its docstrings."""
  tree = ast.parse(path.read_text())
  docstrings = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        docstrings.add(id(body[0].value))
  return [(node.lineno, node.value) for node in ast.walk(tree)
          if isinstance(node, ast.Constant) and isinstance(node.value, str)
          and id(node) not in docstrings]


def test_the_report_spells_no_setting_name():
  names = {n for suite in study.SUITES.values() for n in suite}
  paths = sorted(REPORT_DIR.glob('*.py'))
  assert len(paths) >= 5
  found = [(p.name, line, text) for p in paths for line, text in _string_literals(p)
           if _NAME_LIKE.search(text) or any(n in text for n in names)]
  assert found == [], 'setting names belong in mi_tf/study.py'


def test_the_literal_check_sees_a_reintroduced_name(tmp_path):
  path = tmp_path / 'claims.py'
  path.write_text('"""Doc naming sec3_1_resmlp is fine."""\n\ndef f(t):\n'
                  '  return t.final(f"{x}", "x") or t.final(\'sec3_1_resmlp\', \'y\')\n')
  texts = [text for _, text in _string_literals(path)]
  assert 'sec3_1_resmlp' in texts
  assert not any('Doc' in t for t in texts)


def _imports(path):
  tree = ast.parse(path.read_text())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      out.add(node.module)
      out |= {f'{node.module}.{a.name}' for a in node.names}
  return out


def test_imports_go_one_way_reproduce_report_runs_study():
  mi_tf = REPO / 'mi_tf'
  study_imports = _imports(mi_tf / 'study.py')
  # Only the gin-file lookup (plain Python, the lowest layer).
  assert {m for m in study_imports if m.startswith('mi_tf')} <= {'mi_tf', 'mi_tf.gin_files'}
  runs_imports = {m for m in _imports(mi_tf / 'runs.py') if m.startswith('mi_tf')}
  assert runs_imports <= {'mi_tf', 'mi_tf.jsonl', 'mi_tf.study', 'mi_tf.files', 'mi_tf.leases'}
  for path in REPORT_DIR.glob('*.py'):
    up = {m for m in _imports(path) if 'reproduce' in m}
    assert not up, path.name
  for path in [mi_tf / 'study.py', mi_tf / 'runs.py', mi_tf / 'reproduce.py',
               mi_tf / 'executor.py', mi_tf / 'ray_executor.py', mi_tf / 'leases.py',
               mi_tf / 'files.py', *REPORT_DIR.glob('*.py')]:
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top for a in n.names} | {n.module or '' for n in top
                                                      if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n.split('.')[0] in ('tensorflow', 'matplotlib', 'ray')}, path


def test_the_runner_and_the_report_load_no_tensorflow():
  code = ('import sys, mi_tf.reproduce, mi_tf.report, mi_tf.runs, mi_tf.study, '
          'mi_tf.executor, mi_tf.ray_executor; '
          'assert "tensorflow" not in sys.modules; assert "matplotlib" not in sys.modules; '
          'assert "ray" not in sys.modules')
  subprocess.run([sys.executable, '-c', code], cwd=str(REPO), check=True)
  code = 'import sys, mi_tf.study; assert "numpy" not in sys.modules'
  subprocess.run([sys.executable, '-c', code], cwd=str(REPO), check=True)


def test_names_are_products_of_the_vocabulary():
  assert study.critic_setting('concat', 'nwj') == 'sec3_2_critics_concat_nwj'
  assert study.critic_setting('concat', 'nwj', 'cifar10') == 'cifar10_sec3_2_critics_concat_nwj'
  assert study.encoder_setting('convnet', 'infonce', 4) == 'sec3_3_encoders_convnet_infonce_t4'
  assert study.sec4_setting('noniid', 'infonce') == 'sec4_noniid'
  assert study.sec4_setting('iid', 'nwj') == 'sec4_iid_nwj'
  assert study.realnvp_setting('nwj') == 'sec3_1_realnvp_nwj'
  assert len(study.SUITES['sec3_2']) == 6 and len(study.SUITES['sec3_3']) == 8
  assert len(study.SUITES['cifar10']) == 1 + 6 + 8
  assert pathlib.Path(study.REPO_DIR) == REPO


def test_the_cifar10_plan_gives_the_convnets_one_seed_and_the_rest_three(tmp_path):
  from mi_tf import runs as runs_lib  # pylint: disable=g-import-not-at-top
  settings = [study.make_setting(n) for n in study.SUITES['cifar10']]
  counts = {}
  for run in runs_lib.plan(settings, 3, tmp_path):
    counts[run.setting.name] = counts.get(run.setting.name, 0) + 1
  assert {n for n, k in counts.items() if k == 1} == {
      study.encoder_setting('convnet', e, t, 'cifar10') for e in study.ESTIMATORS
      for t in study.TARGETS}
  assert sum(counts.values()) == 4 * 1 + 11 * 3
  # More seeds where --setting_seeds asks for them.
  name = study.encoder_setting('convnet', 'nwj', 4, 'cifar10')
  assert len([r for r in runs_lib.plan(settings, 3, tmp_path, {name: 3})
              if r.setting.name == name]) == 3
