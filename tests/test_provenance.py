"""Provenance in every run: run_info.json and the export's metadata name the code (commit and
uncommitted changes) and the versions of the packages it ran with."""

import importlib.metadata
import json
import subprocess

import pytest

from conftest import GIN_DIR, REPO, TINY_BINDINGS
from mi_tf import launch
from mi_tf import provenance
from mi_tf import run_dir


def _git(*args):
  return subprocess.run(['git', *args], cwd=REPO, check=True, capture_output=True, text=True,
                        timeout=60).stdout


@pytest.fixture(scope='module')
def checkout():
  if not (REPO / '.git').exists():
    pytest.skip('not a git checkout')
  return {'commit': _git('rev-parse', 'HEAD').strip(),
          'dirty': bool(_git('status', '--porcelain', '--untracked-files=no').strip())}


def _json(path):
  with open(path) as f:
    return json.load(f)


def test_run_info_and_exports_record_the_commit_seed_and_versions(tmp_path, checkout):
  model_dir = tmp_path / 'run'
  launch.train_with_gin(str(model_dir), [str(GIN_DIR / 'sec3_2_critics_bilinear_infonce.gin'),
                                         str(GIN_DIR / 'common' / 'quick.gin')],
                        TINY_BINDINGS + ('train.seed = 3', 'train.export_every_eval = True'))
  info = _json(model_dir / 'run_info.json')
  code = info['sessions'][0]['code']
  assert code == dict(checkout, source='checkout', package_version=code['package_version'])
  assert code['package_version'] == importlib.metadata.version('mi_tf')
  versions = info['versions']
  assert versions['gin'] == importlib.metadata.version('gin-config') != '?'
  assert '?' not in versions.values() and versions['tensorflow'].startswith('2.')
  # The final export and those of single evaluations: code, step, seed and the data.
  for sub, step in (('', 4), ('step_0', 0), ('step_2', 2)):
    meta = _json(model_dir / 'export' / sub / 'mi_tf_metadata.json')
    assert meta['code'] == code, sub
    assert (meta['step'], meta['seed'], meta['dataset'], meta['noise_std']) == (
        step, 3, 'mnist', 0.0), sub


def test_the_export_of_a_task_without_noise_in_its_metadata_still_records_the_data(tmp_path):
  model_dir = tmp_path / 'supervised'
  launch.train_with_gin(str(model_dir), [str(GIN_DIR / 'baseline_supervised_mlp.gin')],
                        TINY_BINDINGS + ("ImageHalves.noise_std = 0.25",))
  info = _json(model_dir / 'run_info.json')
  assert 'noise_std' not in info['task']  # The supervised task's metadata lacks it.
  meta = _json(model_dir / 'export' / 'mi_tf_metadata.json')
  assert (meta['task'], meta['dataset'], meta['noise_std'], meta['seed']) == (
      'supervised_baseline', 'mnist', 0.25, 0)
  assert meta['code'] == info['sessions'][0]['code'] == provenance.code_version()


def test_versions_name_every_package_that_decides_the_numbers():
  versions = run_dir.versions()
  assert {'python', 'tensorflow', 'keras', 'tensorflow_probability', 'tensorflow_datasets',
          'gin', 'scikit-learn', 'numpy'} <= set(versions)
  assert versions['scikit-learn'] == importlib.metadata.version('scikit-learn')
