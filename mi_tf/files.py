"""The runner's file system: every file the study side reads or writes goes through here.

A local path (no ``scheme://``) is handled with ``os`` and needs no TensorFlow, so the runner
and the report start in well under a second. Any other path (``gs://bucket/runs``,
``ram://runs`` in tests, ``hdfs://...``) goes through ``tf.io.gfile``, imported the first time
such a path is seen: the same file API the training loop already writes its run directories
with, so a runs_dir on a bucket works for both sides.

Writes are atomic where the file system allows it: ``write_atomic`` writes a temporary file
next to the target and renames it over the target (POSIX rename is atomic; on an object store
the rename is a copy, but readers see either the old or the new whole object).
``create_exclusive`` is the primitive of the runner's leases: on a local (or NFS) path an
``O_CREAT | O_EXCL`` open, atomic; through gfile a rename with ``overwrite=False``, which on
GCS checks and then copies (a small race window that ``mi_tf.leases`` narrows by reading the
lease back).
"""

import errno
import glob as glob_lib
import os
import re
import uuid

_SCHEME = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def is_local(path):
  return not _SCHEME.match(str(path))


def _gfile():
  # Only for non-local paths: keeps TensorFlow out of the runner's start-up otherwise.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def abspath(path):
  path = str(path)
  return os.path.abspath(path) if is_local(path) else path.rstrip('/')


def join(*parts):
  return os.path.join(*[str(p) for p in parts])


def exists(path):
  return os.path.exists(path) if is_local(path) else _gfile().exists(path)


def isfile(path):
  if is_local(path):
    return os.path.isfile(path)
  g = _gfile()
  return g.exists(path) and not g.isdir(path)


def isdir(path):
  return os.path.isdir(path) if is_local(path) else _gfile().isdir(path)


def makedirs(path):
  if is_local(path):
    os.makedirs(path, exist_ok=True)
  else:
    _gfile().makedirs(path)


def glob(pattern):
  return sorted(glob_lib.glob(pattern) if is_local(pattern) else _gfile().glob(pattern))


def read_text(path):
  """The whole file as text. Raises FileNotFoundError if it is missing."""
  if is_local(path):
    with open(path, errors='replace') as f:
      return f.read()
  g = _gfile()
  if not g.exists(path):
    raise FileNotFoundError(errno.ENOENT, 'No such file', path)
  with g.GFile(path, 'rb') as f:
    return f.read().decode('utf-8', 'replace')


def read_bytes_from(path, offset):
  """The file's bytes from ``offset`` on (b'' if it is missing)."""
  try:
    if is_local(path):
      with open(path, 'rb') as f:
        f.seek(offset)
        return f.read()
    with _gfile().GFile(path, 'rb') as f:
      f.seek(offset)
      return f.read()
  except OSError:
    return b''
  except Exception as e:  # tf.errors.NotFoundError, without importing TensorFlow here.
    if type(e).__name__ == 'NotFoundError':
      return b''
    raise


def _temporary_name(path, kind):
  # In the target's directory, with the target's name NOT as a prefix: TensorFlow's ram://
  # file system reports a path as existing when another file's name starts with it.
  head, tail = os.path.split(str(path))
  return os.path.join(head, f'.{kind}-{uuid.uuid4().hex[:12]}-{tail}')


def write_atomic(path, text):
  """Replaces ``path`` with ``text`` (str or bytes) atomically: a reader, or the next process
  after a kill, finds the old or the new whole file, never a partial one.

  Steps: write a temporary file ``.tmp-<id>-<name>`` in the same directory, flush it to disk,
  rename it over ``path``. If a step fails, the temporary file is removed and the error
  raised (a process killed before the rename leaves it behind; nothing reads such names).
  """
  tmp = _temporary_name(path, 'tmp')
  data = text.encode('utf-8') if isinstance(text, str) else text
  try:
    if is_local(path):
      with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    else:
      g = _gfile()
      with g.GFile(tmp, 'wb') as f:
        f.write(data)
      g.rename(tmp, path, overwrite=True)
  except BaseException:
    try:
      remove(tmp)
    except Exception:  # pylint: disable=broad-except  (the first error is the one to see)
      pass
    raise


def create_exclusive(path, text):
  """Creates ``path`` holding ``text`` if it does not exist; True if this call created it."""
  data = text.encode('utf-8')
  if is_local(path):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    try:
      os.write(fd, data)
      os.fsync(fd)
    finally:
      os.close(fd)
    return True
  g = _gfile()
  tmp = _temporary_name(path, 'new')
  with g.GFile(tmp, 'wb') as f:
    f.write(data)
  try:
    g.rename(tmp, path, overwrite=False)
    return True
  except Exception as e:  # tf.errors.AlreadyExistsError (not imported here).
    g.remove(tmp)
    if type(e).__name__ == 'AlreadyExistsError' or g.exists(path):
      return False
    raise


def rename_no_overwrite(src, dst):
  """Moves ``src`` to a new name ``dst``; False if ``src`` is gone (another process moved it)."""
  if is_local(src):
    try:
      os.rename(src, dst)
      return True
    except FileNotFoundError:
      return False
  g = _gfile()
  try:
    g.rename(src, dst, overwrite=False)
    return True
  except Exception as e:  # tf.errors.NotFoundError
    if type(e).__name__ == 'NotFoundError':
      return False
    raise


def remove(path):
  """Removes a file; no error if it is already gone."""
  try:
    if is_local(path):
      os.remove(path)
    else:
      _gfile().remove(path)
  except FileNotFoundError:
    pass
  except Exception as e:  # tf.errors.NotFoundError
    if type(e).__name__ != 'NotFoundError':
      raise
