"""The README's quickstart, as written there: its mi-tf-train and mi-tf-probe commands run from a
directory outside the repository, the quick run learns (probe above the pixels' 84.8% minus
noise), and its TensorBoard view has the HParams session and the run information."""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

# End to end (several processes): in the e2e tier, `pytest -m e2e` (pytest.ini).
pytestmark = pytest.mark.e2e


def _quickstart_commands():
  """The README's quickstart block, as argv lists (continuation lines joined)."""
  text = (REPO / 'README.md').read_text()
  section = text.split('## Quickstart', 1)[1].split('\n## ', 1)[0]
  block = section.split('```bash', 1)[1].split('```', 1)[0]
  joined = re.sub(r'\\\n\s*', ' ', block)
  commands = []
  for line in joined.splitlines():
    line = line.split('#', 1)[0].strip()
    if line.startswith(('mi-tf-train', 'mi-tf-probe')):
      commands.append(shlex.split(line))
  return commands


def _program(name):
  """The console command of this environment (pip install -e or pip install .)."""
  path = shutil.which(name) or os.path.join(os.path.dirname(sys.executable), name)
  if not os.path.exists(path):
    pytest.fail(f'{name} is not installed: pip install -e . (or pip install .) registers it')
  return path


def test_the_readme_quickstart_trains_probes_and_shows_hparams(tmp_path):
  commands = _quickstart_commands()
  assert [c[0] for c in commands] == ['mi-tf-train', 'mi-tf-probe']
  root = str(tmp_path / 'mi_tf')
  cwd = tmp_path / 'elsewhere'
  cwd.mkdir()
  for argv in commands:
    argv = [_program(argv[0])] + [a.replace('/tmp/mi_tf', root) for a in argv[1:]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=str(cwd))
    assert proc.returncode == 0, proc.stderr[-3000:]
  model_dir = os.path.join(root, 'quick')
  final = json.load(open(os.path.join(model_dir, 'final_metrics.json')))
  assert final['step'] == 2000
  assert final['probe/test_accuracy'] > 0.8
  probe = json.load(open(os.path.join(model_dir, 'probe_result.json')))
  assert probe['train_size'] == 60000 and probe['protocol'] == 'paper'
  assert probe['export_step'] == 2000 and probe['test_accuracy'] > 0.8
  # TensorBoard: the HParams session start at the run's root, the run info text in train/.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  roots = glob.glob(os.path.join(model_dir, 'events.out.tfevents.*'))
  assert roots
  acc = event_accumulator.EventAccumulator(model_dir)
  acc.Reload()
  assert '_hparams_/session_start_info' in acc.summary_metadata
  train = event_accumulator.EventAccumulator(os.path.join(model_dir, 'train'))
  train.Reload()
  assert 'run_info' in train.Tags()['tensors']
