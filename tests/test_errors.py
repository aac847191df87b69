"""One clear line instead of a traceback (exit status 1), and the traceback with --verbose:
a gin file with a syntax error (file and line), a --model_dir that is a file or cannot be
created (a read-only place), a truncated TFRecord file (named, with what to do), a TPU address
that does not resolve (at once) or does not answer (after --cluster_timeout), a probe's error."""

import logging
import os
import shutil
import socket
import time

from conftest import TINY_BINDINGS
from mi_tf.scripts import probe
from mi_tf.scripts import train

TOY = [f'--gin_bindings={b}' for b in TINY_BINDINGS]
MNIST_TFDS = os.path.join(os.environ['TFDS_DATA_DIR'], 'mnist')


def _one_error(argv, caplog, capsys, main=train.main):
  """Runs mi-tf-train in-process; asserts exit status 1, exactly one ERROR record and no
  traceback printed; returns the error's message. (Under pytest the log records go to its
  capture, not to stderr.)"""
  caplog.clear()
  with caplog.at_level(logging.INFO):
    assert main(['mi-tf', *argv]) == 1
  errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
  assert len(errors) == 1, [r.getMessage() for r in errors]
  assert errors[0].exc_info is None  # No traceback without --verbose.
  assert 'Traceback' not in capsys.readouterr().err
  message = errors[0].getMessage()
  assert '\n' not in message and message.endswith('(--verbose shows the traceback)')
  return message


def test_a_gin_syntax_error_names_the_file_and_line_and_verbose_shows_the_traceback(
    tmp_path, caplog, capsys):
  bad = tmp_path / 'bad.gin'
  bad.write_text('train.num_steps = 4\ntrain.batch_size = = 16\n')
  argv = ['--gin_file=sec4_iid.gin', f'--gin_file={bad}', f'--model_dir={tmp_path / "run"}']
  message = _one_error(argv, caplog, capsys)
  assert message.startswith(f'SyntaxError: gin file {bad}, line 2: ')
  assert "'train.batch_size = = 16'" in message
  # An unclosed bracket: gin's tokenizer names no file; the message finds it.
  unclosed = tmp_path / 'unclosed.gin'
  unclosed.write_text('train.num_steps = (4\n')
  message = _one_error(['--gin_file=sec4_iid.gin', f'--gin_file={unclosed}',
                        f'--model_dir={tmp_path / "run"}'], caplog, capsys)
  assert message.startswith(f'TokenError: gin file {unclosed}: EOF in multi-line statement')

  caplog.clear()
  with caplog.at_level(logging.INFO):
    assert train.main(['mi-tf-train', *argv, '--verbose']) == 1
  [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
  assert error.exc_info is not None and error.exc_info[0] is SyntaxError
  assert 'Traceback' in caplog.text
  assert not (tmp_path / 'run').exists()


def test_a_model_dir_that_is_a_file_or_cannot_be_created(tmp_path, caplog, capsys):
  a_file = tmp_path / 'a_file'
  a_file.write_text('not a directory\n')
  for model_dir, expected in (
      (a_file, f'ModelDirError: --model_dir {a_file} is a file, not a directory'),
      (a_file / 'run', f'ModelDirError: --model_dir {a_file / "run"} cannot be created: '
                       f'{a_file} is a file'),
      # Root may write anywhere chmod forbids; sysfs takes no new folder, even from root.
      ('/sys/mi_tf_test_run/run', 'ModelDirError: --model_dir /sys/mi_tf_test_run/run '
                                  'cannot be created: /sys takes no new folder')):
    message = _one_error(['--gin_file=sec4_iid.gin', f'--model_dir={model_dir}', *TOY],
                         caplog, capsys)
    assert message.startswith(expected), message
  assert a_file.read_text() == 'not a directory\n'
  assert not os.path.exists('/sys/mi_tf_test_run')


def test_a_truncated_tfrecord_file_is_named_with_what_to_do(tmp_path, caplog, capsys):
  """A copy of the MNIST TFDS folder whose train file is cut after 20 kB (about 60 of its
  60,000 records)."""
  (version,) = os.listdir(MNIST_TFDS)
  copy = tmp_path / 'tfds' / 'mnist' / version
  copy.mkdir(parents=True)
  for name in os.listdir(os.path.join(MNIST_TFDS, version)):
    source = os.path.join(MNIST_TFDS, version, name)
    if 'train.tfrecord' in name:
      with open(source, 'rb') as f:
        (copy / name).write_bytes(f.read(20000))
      truncated = copy / name
    else:
      shutil.copyfile(source, copy / name)
  message = _one_error(['--gin_file=sec3_2_critics_bilinear_infonce.gin',
                        f'--model_dir={tmp_path / "run"}', f'--data_dir={tmp_path / "tfds"}',
                        *TOY], caplog, capsys)
  assert message.startswith("CorruptDataError: The prepared TFDS data of 'mnist' in "
                            f'{copy} cannot be read: {truncated} (truncated record'), message
  assert f'Re-prepare the dataset: delete {copy} and run `tfds build mnist' in message


def test_a_tpu_address_that_does_not_resolve_or_answer_fails_in_one_line(tmp_path, caplog, capsys):
  start = time.monotonic()
  message = _one_error(['--gin_file=sec4_iid.gin', f'--model_dir={tmp_path / "run"}',
                        '--tpu=grpc://no-such-host.invalid:8470', *TOY], caplog, capsys)
  assert time.monotonic() - start < 60  # Bounded by --cluster_timeout (300 s) otherwise.
  assert message.startswith('ClusterError: The host of the TPU address '
                            "grpc://no-such-host.invalid:8470 does not resolve: "
                            "'no-such-host.invalid'"), message
  assert not (tmp_path / 'run').exists()
  # An address that resolves but does not answer: given up after --cluster_timeout.
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  message = _one_error(['--gin_file=sec4_iid.gin', f'--model_dir={tmp_path / "run"}',
                        f'--tpu=grpc://127.0.0.1:{port}', '--cluster_timeout=2', *TOY],
                       caplog, capsys)
  assert message.startswith('ClusterError: Gave up after 2 s: no answer from the TPU at '
                            f'127.0.0.1:{port} (--tpu).'), message


def test_probe_errors_are_one_line_and_verbose_adds_the_traceback(tmp_path, caplog, capsys):
  argv = [f'--saved_model={tmp_path / "no_run" / "export"}']
  message = _one_error(argv, caplog, capsys, main=probe.main)
  assert f'{tmp_path / "no_run" / "export"} is not a SavedModel directory' in message
  caplog.clear()
  with caplog.at_level(logging.INFO):
    assert probe.main(['mi-tf-probe', *argv, '--verbose']) == 1
  [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
  assert error.exc_info is not None


def test_a_bad_cluster_timeout_is_a_usage_error(capsys):
  assert train.main(['mi-tf-train', '--gin_file=sec4_iid.gin', '--model_dir=x',
                     '--cluster_timeout=0']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'cluster_timeout' in err[0]
