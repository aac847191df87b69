"""The package as installed from a wheel: its gin files, build commit, console commands and
license; gin-file lookup by name from any directory; the runner's children as modules.

One wheel is built (pip wheel --no-deps, ~10 s) and unpacked next to a stand-in for
gin-config's own ``gin`` package, as site-packages would hold them; the pure-Python modules
run from there in subprocesses (no TensorFlow needed).
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys
import zipfile

import pytest

from conftest import GIN_DIR, REPO
from mi_tf import gin_files
from mi_tf import runs as runs_lib
from mi_tf import study

COMMANDS = {'mi-tf-train': 'mi_tf.scripts.train:run', 'mi-tf-probe': 'mi_tf.scripts.probe:run',
            'mi-tf-reproduce': 'mi_tf.reproduce:main'}


def _repo_gin_names():
  return sorted(p.relative_to(GIN_DIR).as_posix() for p in GIN_DIR.rglob('*.gin'))


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  out = tmp_path_factory.mktemp('wheel')
  proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--quiet',
                         '--disable-pip-version-check', '-w', str(out), str(REPO)],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (path,) = out.glob('mi_tf-*.whl')
  return path


@pytest.fixture(scope='module')
def site(wheel, tmp_path_factory):
  """The wheel unpacked into a site-packages-like folder that also holds a ``gin`` package
  (gin-config's): the folder above mi_tf/ has a gin/, but it is not a checkout."""
  root = tmp_path_factory.mktemp('site')
  with zipfile.ZipFile(wheel) as z:
    z.extractall(root)
  (root / 'gin').mkdir()
  (root / 'gin' / '__init__.py').write_text('')
  return root


def _run_installed(site, code, cwd):
  env = dict(os.environ, PYTHONPATH=str(site))  # Before the editable install's path.
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        cwd=str(cwd), env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_the_wheel_holds_the_gin_files_the_build_commit_the_commands_and_the_license(wheel):
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    gin = sorted(n[len('mi_tf/gin/'):] for n in names if n.startswith('mi_tf/gin/'))
    assert gin == _repo_gin_names()
    assert {'sec4_iid.gin', 'common/quick.gin', 'common/mnist_protocol.gin'} <= set(gin)
    assert {'mi_tf/scripts/__init__.py', 'mi_tf/scripts/train.py', 'mi_tf/scripts/probe.py',
            'mi_tf/gin_files.py', 'mi_tf/study_durations.json'} <= names
    info = json.loads(z.read('mi_tf/_build_info.json'))
    dist_info = next(n.split('/')[0] for n in names if n.endswith('.dist-info/METADATA'))
    entry_points = z.read(f'{dist_info}/entry_points.txt').decode()
    licenses = [n for n in names if n.startswith(dist_info) and 'LICENSE' in n]
    assert licenses, sorted(names)
    assert 'Apache License' in z.read(licenses[0]).decode()
    assert 'Version 2.0, January 2004' in z.read(licenses[0]).decode()
    metadata = z.read(f'{dist_info}/METADATA').decode()
  for command, target in COMMANDS.items():
    assert f'{command} = {target}' in entry_points
  assert 'Requires-Dist: keras==3.15.1' in metadata
  assert 'Requires-Dist: absl-py' in metadata
  commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=str(REPO), capture_output=True,
                          text=True).stdout.strip()
  assert set(info) == {'commit', 'dirty'}
  if commit:
    assert info['commit'] == commit and isinstance(info['dirty'], bool)


def test_the_installed_package_finds_its_gin_files_and_its_commit(site, tmp_path):
  code = '\n'.join([
      'import json',
      'from mi_tf import gin_files, provenance, runs, study',
      'version = provenance.code_version()',
      'print(json.dumps({',
      '    "module": gin_files.__file__, "gin_dir": str(gin_files.gin_dir()),',
      '    "checkout": gin_files.checkout_dir(),',
      '    "by_path": gin_files.resolve("gin/sec4_iid.gin"),',
      '    "fragment": gin_files.resolve("common/quick.gin"),',
      '    "experiments": gin_files.available().experiments,',
      '    "settings": [s.name for s in study.suite_settings(["sec4"])],',
      '    "durations": len(runs.measured_durations()),',
      '    "source": version["source"], "commit": version["commit"]}))'])
  out = json.loads(_run_installed(site, code, tmp_path))
  assert out['module'] == str(site / 'mi_tf' / 'gin_files.py')
  assert out['checkout'] is None
  assert out['gin_dir'] == str(site / 'mi_tf' / 'gin')
  assert out['by_path'] == str(site / 'mi_tf' / 'gin' / 'sec4_iid.gin')
  assert out['fragment'] == str(site / 'mi_tf' / 'gin' / 'common' / 'quick.gin')
  assert 'sec4_iid.gin' in out['experiments'] and 'common/quick.gin' not in out['experiments']
  assert len(out['settings']) == 4 and out['durations'] > 0
  info = json.loads((site / 'mi_tf' / '_build_info.json').read_text())
  assert out['source'] == 'wheel' and out['commit'] == info['commit']


def test_the_installed_runner_starts_modules_and_the_help_lists_the_packaged_gin_files(
    site, tmp_path):
  code = ('import sys; from mi_tf import reproduce; sys.exit(reproduce.main(["run", '
          f'"--settings=sec4_iid,baseline_pixels", "--seeds=1", "--runs_dir={tmp_path}", '
          '"--dry_run"]))')
  lines = _run_installed(site, code, tmp_path).strip().splitlines()
  train = next(shlex.split(line) for line in lines if 'sec4_iid' in line)
  assert train[1:4] == ['-m', 'mi_tf.scripts.train', '--gin_file=gin/sec4_iid.gin']
  assert any(' -m mi_tf.scripts.probe --pixels ' in line for line in lines)
  code = 'from mi_tf.scripts import train; train.main(["mi-tf-train", "--helpfull"])'
  text = _run_installed(site, code, tmp_path)
  assert str(site / 'mi_tf' / 'gin') in text
  assert 'sec3_1_realnvp.gin' in text and 'common/quick.gin' in text


def test_resolve_finds_gin_files_by_name_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert gin_files.checkout_dir() == REPO and gin_files.gin_dir() == GIN_DIR
  assert gin_files.resolve('sec4_iid.gin') == str(GIN_DIR / 'sec4_iid.gin')
  assert gin_files.resolve('gin/sec4_iid.gin') == str(GIN_DIR / 'sec4_iid.gin')
  assert gin_files.resolve('common/quick.gin') == str(GIN_DIR / 'common' / 'quick.gin')
  assert gin_files.resolve('gin/common/quick.gin') == str(GIN_DIR / 'common' / 'quick.gin')
  # A file of the current directory, or of a search path, comes first.
  (tmp_path / 'sec4_iid.gin').write_text('train.num_steps = 1\n')
  assert gin_files.resolve('sec4_iid.gin') == 'sec4_iid.gin'
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'mine.gin').write_text('')
  assert gin_files.resolve('mine.gin', [tmp_path / 'configs']) == str(
      tmp_path / 'configs' / 'mine.gin')
  assert gin_files.resolve('gs://bucket/x.gin') == 'gs://bucket/x.gin'  # Checked by gin.

  with pytest.raises(FileNotFoundError) as error:
    gin_files.resolve('gin/sec4_idd.gin')
  message = str(error.value)
  assert "'gin/sec4_idd.gin' not found" in message and str(GIN_DIR / 'sec4_idd.gin') in message
  assert 'closest: sec4_iid.gin' in message and '\n' not in message
  with pytest.raises(FileNotFoundError, match='closest: common/quick.gin'):
    gin_files.resolve('common/quik.gin')
  with pytest.raises(FileNotFoundError, match='closest: sec3_1_realnvp.gin'):
    gin_files.resolve('/elsewhere/sec3_1_realnvp_.gin')

  known = gin_files.available()
  assert sorted(known.experiments + known.fragments) == _repo_gin_names()
  assert known.fragments == sorted(n for n in _repo_gin_names() if n.startswith('common/'))


def test_the_runner_starts_modules_and_old_runner_logs_match_them(tmp_path):
  train, probe = runs_lib.plan(study.suite_settings([], ['sec4_iid,baseline_pixels']), 1,
                               tmp_path)
  assert runs_lib.command(train, '/py')[:4] == ['/py', '-m', 'mi_tf.scripts.train',
                                                '--gin_file=gin/sec4_iid.gin']
  assert runs_lib.command(probe, '/py')[:4] == ['/py', '-m', 'mi_tf.scripts.probe', '--pixels']
  # A runner.log of an older runner (`python train.py ...`): the same arguments.
  new = runs_lib.command(train, '/py')
  old = ['python', 'train.py'] + new[3:]
  assert runs_lib._result_arguments(old) == runs_lib._result_arguments(new) == new[3:]  # pylint: disable=protected-access
  os.makedirs(train.model_dir)
  (pathlib.Path(train.model_dir) / runs_lib.RUNNER_LOG).write_text(
      '==== 2026-01-01T00:00:00 ' + ' '.join(shlex.quote(a) for a in old) + '\nlog\n')
  assert runs_lib.other_arguments(train) is None
  (pathlib.Path(train.model_dir) / runs_lib.RUNNER_LOG).write_text(
      '==== 2026-01-01T00:00:00 ' + ' '.join(shlex.quote(a) for a in old + ['--x=1']) + '\n')
  assert runs_lib.other_arguments(train) == new[3:] + ['--x=1']
