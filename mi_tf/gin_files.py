"""Where the gin files are, and the lookup of a ``--gin_file`` by path or by name.

Plain Python (no TensorFlow, no gin): the training stack (``launch.parse_gin``) and the study
stack (a setting is the stem of a gin file) both use it.

The gin files live in ``gin/`` at the repository root (``gin/<experiment>.gin``, and the
include-only fragments ``gin/common/<fragment>.gin``). A wheel carries the same tree as package
data, ``mi_tf/gin/`` (setup.py's build step copies it), so an installed package finds them
without a checkout:

  resolve('gin/sec4_iid.gin')     # from the repository root, or from any directory
  resolve('sec4_iid.gin')         # by name, from any directory
  resolve('common/quick.gin')     # a fragment
  resolve('my.gin', ['configs'])  # configs/my.gin
"""

import collections
import difflib
import os
import pathlib

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
FRAGMENTS = 'common'  # The folder of include-only fragments, inside the gin folder.


def checkout_dir():
  """The repository root when this package runs from a checkout (the folder above mi_tf/
  holds setup.py and gin/), else None (an installed package: the folder above is
  site-packages, which may well hold gin-config's own ``gin`` package)."""
  root = PACKAGE_DIR.parent
  if (root / 'setup.py').is_file() and (root / 'gin').is_dir():
    return root
  return None


def gin_dir():
  """The folder of the gin files: the repository's gin/ in a checkout, else the installed
  package's mi_tf/gin/."""
  root = checkout_dir()
  return root / 'gin' if root is not None else PACKAGE_DIR / 'gin'


Available = collections.namedtuple('Available', ['experiments', 'fragments'])


def available():
  """The gin files of ``gin_dir()``, as names ``--gin_file`` takes.

  Returns:
    Available(experiments, fragments): sorted lists of names relative to gin_dir():
    experiments ['sec4_iid.gin', ...] (the files outside common/) and fragments
    ['common/quick.gin', ...] (common/*.gin, meant to be included or given after an
    experiment).
  """
  root = gin_dir()
  names = sorted(p.relative_to(root).as_posix() for p in root.rglob('*.gin') if p.is_file())
  fragments = [n for n in names if n.startswith(FRAGMENTS + '/')]
  return Available([n for n in names if n not in fragments], fragments)


def _strip_gin_prefix(path):
  parts = pathlib.PurePath(path).parts
  if len(parts) > 1 and parts[0] == 'gin':
    return str(pathlib.PurePath(*parts[1:]))
  return None


def resolve(path, search_paths=()):
  """An existing gin file for ``path``: a path, or a name relative to a search path or to
  the gin folder.

  Tried in order: ``path`` as given (relative to the current directory, or absolute); each
  ``search_paths`` folder / path; ``gin_dir()`` / path; and, when ``path`` starts with
  ``gin/``, ``gin_dir()`` / the rest (so ``gin/sec4_iid.gin`` works from any directory, and
  in an installed package). A path with a scheme (``gs://...``) is returned unchanged: it is
  checked by whoever reads it.

  Returns:
    str: the file found (``path`` itself when it exists as given).
  Raises:
    FileNotFoundError: none exists; the message names where it looked and the closest names
      among ``available()``.
  """
  path = os.fspath(path)
  if '://' in path or os.path.isfile(path):
    return path
  tried = [path]
  if not os.path.isabs(path):
    root = gin_dir()
    tried += [os.path.join(os.fspath(p), path) for p in search_paths]
    tried.append(str(root / path))
    rest = _strip_gin_prefix(path)
    if rest is not None:
      tried.append(str(root / rest))
    for candidate in tried[1:]:
      if os.path.isfile(candidate):
        return candidate
  raise FileNotFoundError(_not_found_message(path, tried))


def _not_found_message(path, tried):
  known = available()
  names = known.experiments + known.fragments
  wanted = _strip_gin_prefix(path) or path
  close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
  if not close:  # A wrong folder: compare the file names alone.
    by_name = {os.path.basename(n): n for n in names}
    close = [by_name[n] for n in difflib.get_close_matches(
        os.path.basename(path), list(by_name), n=3, cutoff=0.6)]
  looked = ', '.join(dict.fromkeys(tried))
  hint = f'; closest: {", ".join(close)}' if close else ''
  return (f'gin file {path!r} not found (looked for {looked}){hint}. The gin files are in '
          f'{gin_dir()} (mi-tf-train --helpfull lists them).')


def is_fragment(path):
  """Whether ``path`` (as resolved) is one of the package's include-only fragments
  (``<gin folder>/common/*.gin``)."""
  try:
    resolved = pathlib.Path(path).resolve()
  except (OSError, ValueError):
    return False
  return resolved.parent == (gin_dir() / FRAGMENTS).resolve()
