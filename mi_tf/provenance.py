"""Where a run's code came from: the git commit of the checkout (and whether it had uncommitted
changes), or, for an installed package, the commit baked in when the wheel was built.

Plain Python (no TensorFlow): both the training stack (``run_info.json``, the export's
metadata) and the study stack (the runner's summary) record it.
"""

import functools
import json
import pathlib
import subprocess

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
# Written by setup.py's build step into the wheel (not present in a checkout).
BUILD_INFO_FILE = PACKAGE_DIR / '_build_info.json'


def git_commit(directory):
  """{'commit': full sha, 'dirty': bool} of the git checkout holding ``directory``, or None
  (not a checkout, or git missing). ``dirty``: tracked files differ from the commit."""
  try:
    sha = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=directory, check=True,
                         capture_output=True, text=True, timeout=30).stdout.strip()
    status = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                            cwd=directory, check=True, capture_output=True, text=True,
                            timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return {'commit': sha, 'dirty': bool(status.strip())}


@functools.lru_cache(maxsize=1)
def code_version():
  """The code of this process: {'commit', 'dirty', 'source', 'package_version'}.

  ``source`` is 'checkout' (read from git now), 'wheel' (baked in at build time) or
  'unknown' (commit and dirty None).
  """
  from mi_tf import __version__  # pylint: disable=g-import-not-at-top
  info = {'package_version': __version__}
  checkout = git_commit(PACKAGE_DIR.parent) if (PACKAGE_DIR.parent / '.git').exists() else None
  if checkout:
    return dict(info, source='checkout', **checkout)
  try:
    baked = json.loads(BUILD_INFO_FILE.read_text())
    return dict(info, source='wheel', commit=baked.get('commit'), dirty=baked.get('dirty'))
  except (OSError, ValueError):
    return dict(info, source='unknown', commit=None, dirty=None)


def short(version=None):
  """'1a2b3c4' or '1a2b3c4 (with uncommitted changes)' or 'unknown'."""
  version = code_version() if version is None else version
  if not version.get('commit'):
    return 'unknown'
  return version['commit'][:7] + (' (with uncommitted changes)' if version.get('dirty') else '')
