"""Leases: at most one driver executes a run at a time, on any file system ``mi_tf.files`` reads.

A lease is the file ``<model_dir>/.runner.lease`` (JSON: owner id, host, pid, acquired and
renewed times; another name for another kind of owner: ``mi_tf.run_dir`` holds
``.train.lease`` while a training process writes the run). A driver (the local executor, or
the Ray driver, which owns the whole sweep) takes it with an atomic create-if-absent before it
starts the run, renews it every ``ttl / 4`` seconds from one heartbeat thread while the run
executes, and removes it after. It replaces POSIX ``flock``, which neither object stores nor
most cluster file systems give.

A lease is stale, and may be broken, when it was not renewed for ``ttl`` seconds (its driver
died; the driver's children die with it: ``mi_tf.executor`` starts them with a parent-death
signal) or when it names a process on this host that no longer exists. Breaking renames the
stale file to a unique name first: a rename succeeds for one breaker only, so two drivers
never both break and retake the same lease. After creating a lease the driver reads it back:
on object stores, where create-if-absent is a check and a copy, a second writer in that window
is seen and one of the two backs off (best effort: there, prefer one driver per sweep, as the
Ray executor is).

Times are wall-clock seconds since the epoch: the drivers of one runs_dir need clocks that
agree to well within ``ttl`` (NTP does).
"""

import json
import os
import socket
import threading
import time
import uuid

from mi_tf import files

LEASE_FILE = '.runner.lease'
# The lease of a training process on its model_dir (mi_tf.run_dir): one writer per run.
TRAIN_LEASE_FILE = '.train.lease'
DEFAULT_TTL = 120.0  # Seconds without renewal after which a lease is stale.


def _path(model_dir, name=LEASE_FILE):
  return files.join(model_dir, name)


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def read(model_dir, name=LEASE_FILE):
  """The lease record of a run (dict), or None if there is none (or it is unreadable)."""
  try:
    return json.loads(files.read_text(_path(model_dir, name)))
  except (OSError, ValueError):
    return None


def is_stale(record, ttl=DEFAULT_TTL, now=None):
  """True if nobody holds this lease any more: not renewed for ``ttl`` seconds, or its process
  on this host is gone."""
  if record is None:
    return True
  now = time.time() if now is None else now
  if now - float(record.get('renewed', 0)) > float(record.get('ttl', ttl)):
    return True
  return record.get('host') == socket.gethostname() and not _pid_alive(int(record.get('pid', 0)))


class Holder:
  """The leases one driver holds, renewed by one daemon thread.

  ``acquire(model_dir)`` -> True if this driver now holds the run; ``release(model_dir)``.
  ``name``: the lease file's name in each model_dir.
  """

  def __init__(self, ttl=DEFAULT_TTL, owner=None, name=LEASE_FILE):
    self.ttl = float(ttl)
    self.name = name
    self.owner = owner or f'{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}'
    self._held = {}  # model_dir -> acquired time.
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = None

  def _record(self, acquired):
    return json.dumps({'owner': self.owner, 'host': socket.gethostname(), 'pid': os.getpid(),
                       'acquired': acquired, 'renewed': time.time(), 'ttl': self.ttl})

  def acquire(self, model_dir):
    files.makedirs(model_dir)
    path = _path(model_dir, self.name)
    now = time.time()
    if not files.create_exclusive(path, self._record(now)):
      seen = read(model_dir, self.name)
      if not is_stale(seen, self.ttl):
        return False
      # Break it: move the stale file aside (only one breaker's rename succeeds), check that
      # what was moved is the stale lease that was judged, then create ours.
      aside = files.join(model_dir, f'.stale-{uuid.uuid4().hex[:8]}{self.name}')
      if not files.rename_no_overwrite(path, aside):
        return False
      try:
        moved = json.loads(files.read_text(aside))
      except (OSError, ValueError):
        moved = None
      if seen is not None and moved != seen:  # A fresh lease was taken meanwhile: put it back.
        files.rename_no_overwrite(aside, path)
        return False
      files.remove(aside)
      if not files.create_exclusive(path, self._record(now)):
        return False
    back = read(model_dir, self.name)
    if back is None or back.get('owner') != self.owner:
      return False  # Another driver wrote it in the same window (object stores).
    with self._lock:
      self._held[model_dir] = now
    self._start_heartbeat()
    return True

  def release(self, model_dir):
    with self._lock:
      self._held.pop(model_dir, None)
    record = read(model_dir, self.name)
    if record is not None and record.get('owner') == self.owner:
      files.remove(_path(model_dir, self.name))

  def renew(self):
    """Renews every held lease now (the heartbeat thread calls this every ttl / 4 s)."""
    with self._lock:
      held = dict(self._held)
    for model_dir, acquired in held.items():
      record = read(model_dir, self.name)
      if record is not None and record.get('owner') == self.owner:
        files.write_atomic(_path(model_dir, self.name), self._record(acquired))

  def _start_heartbeat(self):
    if self._thread is not None:
      return
    def beat():
      while not self._stop.wait(self.ttl / 4):
        try:
          self.renew()
        except Exception:  # pylint: disable=broad-except
          pass  # A transient file system error: the next beat retries well within the ttl.
    self._thread = threading.Thread(target=beat, name='lease-heartbeat', daemon=True)
    self._thread.start()

  def close(self):
    """Stops renewing and releases every lease still held."""
    self._stop.set()
    with self._lock:
      held = list(self._held)
    for model_dir in held:
      self.release(model_dir)
