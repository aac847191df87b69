"""The command-line programs (mi_tf.scripts.train / .probe): absl flags (repeatable
--gin_file, --flagfile, --helpfull listing the gin files), gin files by name from any
directory, train.log, one-line errors, no output file of a pixel probe unless asked, and a
quiet TensorFlow start."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, TINY_BINDINGS
from mi_tf import scripts
from mi_tf import tf_quiet
from mi_tf.scripts import probe
from mi_tf.scripts import train

# The toy of Sec. 4 at TINY_BINDINGS: a few seconds.
TOY = [f'--gin_bindings={b}' for b in TINY_BINDINGS]
NOISE = ('absl::InitializeLog', 'cudart_stub.cc', 'cpu_feature_guard.cc')


def _final_step(model_dir):
  with open(os.path.join(model_dir, 'final_metrics.json')) as f:
    return json.load(f)['step']


def test_train_takes_gin_files_by_name_and_each_owning_session_appends_to_train_log(
    tmp_path, monkeypatch):
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  configs = tmp_path / 'configs'
  configs.mkdir()
  (configs / 'six_steps.gin').write_text('train.num_steps = 6\n')
  model_dir = tmp_path / 'run'
  # Two --gin_file, the later overriding the earlier: by path, and by name in a search path
  # (TOY's own num_steps left out: bindings come after the files).
  argv = ['mi-tf-train', '--gin_file=gin/sec4_iid.gin', '--gin_file=six_steps.gin',
          f'--gin_search_paths={configs}', f'--model_dir={model_dir}', '--seed=3',
          *[a for a in TOY if 'num_steps' not in a]]
  assert train.main(argv) == 0
  assert _final_step(model_dir) == 6
  assert 'train.seed = 3' in (model_dir / 'config.gin').read_text()
  assert os.listdir(cwd) == []  # Nothing written where it ran.
  log = (model_dir / 'train.log').read_text().splitlines()
  assert log[0].startswith('==== ') and '--gin_file=six_steps.gin' in log[0]
  assert 'mi_tf 0.1.0' in log[0]
  assert any(re.fullmatch(r'\d\d:\d\d:\d\d INFO Finished 6 steps in .*', line) for line in log)
  # Commands that do not own the run append nothing: one that finds it finished, one refused
  # (a typo), one on another process's run (its lease).
  before = (model_dir / 'train.log').read_text()
  assert train.main(argv) == 0
  assert train.main(argv + ['--gin_bindings=train.num_stepz = 7']) == 1
  assert (model_dir / 'train.log').read_text() == before
  # A continued session (more steps) appends its own lines after a second header.
  assert train.main(argv + ['--gin_bindings=train.num_steps = 8']) == 0
  log = (model_dir / 'train.log').read_text().splitlines()
  assert sum(line.startswith('==== ') for line in log) == 2
  assert any(re.fullmatch(r'\d\d:\d\d:\d\d INFO Finished 8 steps in .*', line) for line in log)


def test_train_reads_a_flagfile(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  flagfile = tmp_path / 'run.flags'
  flagfile.write_text('# The Sec. 4 toy, tiny.\n--gin_file=sec4_iid.gin\n'
                      + ''.join(a + '\n' for a in TOY))
  model_dir = tmp_path / 'run'
  assert train.main(['mi-tf-train', f'--flagfile={flagfile}', f'--model_dir={model_dir}',
                     '--gin_bindings=train.num_steps = 2']) == 0
  assert _final_step(model_dir) == 2  # The command line's binding comes after the file's.
  # A model_dir on another file system (here TensorFlow's in-memory one): no train.log.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  remote = f'ram://test-scripts-{os.getpid()}/run'
  assert train.main(['mi-tf-train', f'--flagfile={flagfile}', f'--model_dir={remote}']) == 0
  assert tf.io.gfile.exists(f'{remote}/final_metrics.json')
  assert not tf.io.gfile.exists(f'{remote}/train.log')
  assert sorted(os.listdir(tmp_path)) == ['run', 'run.flags']


def test_help_lists_every_gin_file_and_bad_command_lines_get_one_line(capsys):
  for flag in ('--helpfull', '--help'):
    assert train.main(['mi-tf-train', flag]) == 0
    out = capsys.readouterr().out
    for name in ('--gin_file', '--gin_bindings', '--gin_search_paths', '--flagfile',
                 'sec3_1_realnvp.gin', 'cifar10_sec3_2_critics_bilinear_nwj.gin',
                 'common/quick.gin', 'common/mnist_protocol.gin'):
      assert name in out, (flag, name)
  assert probe.main(['mi-tf-probe', '--helpfull']) == 0
  assert '--saved_model' in capsys.readouterr().out

  for argv in (['mi-tf-train', '--gin_file=sec4_iid.gin'],  # No --model_dir.
               ['mi-tf-train', '--gin_file=sec4_iid.gin', '--model_dir=x', '--sed=1'],
               ['mi-tf-train', '--gin_file=sec4_iid.gin', '--model_dir=x', 'extra'],
               ['mi-tf-train', '--gin_file=sec4_iid.gin', '--model_dir=x',
                '--distribution=mirored'],
               ['mi-tf-probe', '--pixels', '--saved_model=x'],
               ['mi-tf-probe']):
    main = train.main if argv[0] == 'mi-tf-train' else probe.main
    assert main(argv) == scripts.USAGE_ERROR, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('ERROR '), (argv, err)
  assert not os.path.exists('x')


def test_a_bad_binding_fails_in_one_error_line_without_noise_or_a_run_dir(tmp_path):
  model_dir = tmp_path / 'run'
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  proc = subprocess.run(
      [sys.executable, '-m', 'mi_tf.scripts.train', '--gin_file=sec4_iid.gin',
       f'--model_dir={model_dir}', '--gin_bindings=train.num_stepz = 3'],
      capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
  assert proc.returncode == 1
  lines = proc.stderr.splitlines()
  errors = [line for line in lines if ' ERROR ' in line]
  assert len(errors) == 1, proc.stderr
  assert re.match(r'\d\d:\d\d:\d\d ERROR ValueError: .*num_stepz', errors[0])
  assert lines[0] == errors[0], proc.stderr  # Nothing before it: TensorFlow started quietly.
  assert 'Traceback' not in proc.stderr and not any(n in proc.stderr for n in NOISE)
  assert not model_dir.exists() and os.listdir(tmp_path) == []


def test_the_stderr_filter_drops_only_the_noise_and_keeps_the_order():
  code = '\n'.join([
      'import os, sys',
      'from mi_tf import tf_quiet',
      "os.write(2, b'before\\n')",
      'with tf_quiet.filtered_stderr(lambda line: line.startswith(b"noise")):',
      "  os.write(2, b'noise 1\\nkept 1\\nnoise 2\\n')",
      "  print('kept 2', file=sys.stderr)",
      "print('after', file=sys.stderr)"])
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=60, cwd=str(REPO))
  assert proc.returncode == 0, proc.stderr
  assert proc.stderr.splitlines() == ['before', 'kept 1', 'kept 2', 'after']


def test_the_import_noise_is_the_known_lines_only():
  """The lines TensorFlow 2.21's import writes (the oneDNN one only on CPUs with AVX-512, so the
  subprocess check below meets it on some machines only) are noise; others are kept."""
  noise = [
      b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n',
      b'I0000 00:00:1796137895.899312   16584 cudart_stub.cc:31] Could not find cuda drivers on '
      b'your machine, GPU will not be used.\n',
      b'I0000 00:00:1796198073.017985    9213 port.cc:153] oneDNN custom operations are on. You '
      b'may see slightly different numerical results due to floating-point round-off errors '
      b'from different computation orders. To turn them off, set the environment variable '
      b'`TF_ENABLE_ONEDNN_OPTS=0`.\n']
  assert all(tf_quiet._is_tf_import_noise(line) for line in noise)  # pylint: disable=protected-access
  kept = [b'E0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n',
          b'Traceback (most recent call last):\n', noise[2].replace(b'on.', b'off.')]
  assert not any(tf_quiet._is_tf_import_noise(line) for line in kept)  # pylint: disable=protected-access


def test_the_quiet_start_silences_the_tensorflow_import():
  """Without it, ``import tensorflow`` writes the absl banner and the cudart_stub line twice
  on a machine without CUDA, TF_CPP_MIN_LOG_LEVEL=3 or not."""
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  code = ('import os; from mi_tf import tf_quiet; tf_quiet.quiet_tensorflow_start(); '
          "os.write(2, b'before\\n'); import tensorflow; os.write(2, b'after\\n'); "
          "assert type(tensorflow.__spec__.loader).__name__ != '_QuietLoader'")
  quiet = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300, env=env, cwd=str(REPO))
  assert quiet.returncode == 0, quiet.stderr
  assert quiet.stderr.splitlines() == ['before', 'after']


def test_probe_of_pixels_writes_no_file_unless_asked(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  splits = ['--train_split=train[:2000]', '--test_split=test[:500]']
  assert probe.main(['mi-tf-probe', '--pixels', *splits]) == 0
  out = capsys.readouterr().out
  assert 'test accuracy' in out and 'not written' in out
  assert os.listdir(tmp_path) == []
  result = json.loads(out[:out.rindex('}') + 1])
  assert result['source'] == 'pixels' and result['test_size'] == 500
  assert result['dataset'] == 'mnist' and result['noise_std'] == 0.0  # The defaults.
  output = tmp_path / 'out' / 'pixels.json'
  output.parent.mkdir()
  assert probe.main(['mi-tf-probe', '--pixels', *splits, f'--output={output}']) == 0
  written = json.loads(output.read_text())
  untimed = lambda r: {k: v for k, v in r.items() if 'seconds' not in k}  # noqa: E731
  assert untimed(written) == untimed(result) and written['test_accuracy'] > 0.6
  assert os.listdir(output.parent) == ['pixels.json']  # Written atomically: no leftovers.


def test_a_gin_file_elsewhere_includes_the_package_fragments(tmp_path, monkeypatch):
  import gin  # pylint: disable=g-import-not-at-top
  from mi_tf import launch  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  # gin's include search path as in a fresh process (earlier parses add to it for good).
  monkeypatch.setattr(gin.config, '_LOCATION_PREFIXES', [''])
  monkeypatch.setattr(launch, '_SEARCH_PATHS', set())
  mine = tmp_path / 'elsewhere' / 'mine.gin'
  mine.parent.mkdir()
  mine.write_text("include 'sec3_2_critics_bilinear_infonce.gin'\n"
                  "include 'common/quick.gin'\ntrain.eval_every = 500\n")
  launch.parse_gin([str(mine)])
  assert gin.query_parameter('train.num_steps') == 2000  # quick.gin over mnist_protocol.gin.
  assert gin.query_parameter('train.eval_every') == 500


def test_a_fragment_alone_is_refused_before_anything_is_written(tmp_path):
  from mi_tf import launch  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / 'run'
  with pytest.raises(ValueError, match='only shared fragments'):
    launch.train_with_gin(str(model_dir), ['common/mnist_protocol.gin', 'common/quick.gin'])
  assert not model_dir.exists()


def test_sec4_eval_sets_reproduces_the_runs_own_evaluation_and_draws_other_sets(tmp_path):
  """scripts/sec4_eval_sets.py restores a Sec. 4 critic: on the run's own set it must give the
  run's final I_EST/eval; other evaluation seeds give other sets (other values)."""
  from mi_tf import launch  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / 'run'
  launch.train_with_gin(str(model_dir), ['sec4_noniid.gin'],
                        list(TINY_BINDINGS) + ['train.seed = 3'])
  proc = subprocess.run(
      [sys.executable, str(REPO / 'scripts' / 'sec4_eval_sets.py'), f'--model_dir={model_dir}',
       '--eval_seeds=3', '--eval_batches=8'],
      capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout)
  final = json.loads((model_dir / 'final_metrics.json').read_text())['I_EST/eval']
  assert abs(out['own_set'] - final) < 1e-9 and out['final_I_EST/eval'] == final
  # The run's own set is seed 3's 4 batches (TINY_BINDINGS); the others, seeds 0-2's 8 each.
  assert len(set(out['per_set'])) == 3 and out['own_set'] not in out['per_set']
  assert out['eval_seeds_sd'] > 0 and out['predicted_sd'] > 0
  assert abs(out['first_study']) < 10
  # Not a finished Sec. 4 run: one line, no traceback.
  proc = subprocess.run(
      [sys.executable, str(REPO / 'scripts' / 'sec4_eval_sets.py'), f'--model_dir={tmp_path}'],
      capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
  assert proc.returncode == 1 and 'no config.gin' in proc.stderr
  assert 'Traceback' not in proc.stderr
