"""The command-line programs: ``mi-tf-train`` (``train``) and ``mi-tf-probe`` (``probe``).

Each is ``python -m mi_tf.scripts.<name>`` too (what the study runner starts), and the root
``train.py`` / ``eval_probe.py`` of a checkout call the same ``run()``. What they share lives
here:

- flags: absl flags in a private ``FlagValues`` per call (so ``main(argv)`` parses afresh each
  time, from tests too), ``--flagfile`` (absl's), ``--help`` / ``--helpfull`` that also list
  the gin files, and usage errors as one line (exit status 2);
- logging: Python logging, ``HH:MM:SS LEVEL message``, ``mi_tf`` at INFO; ``RunLog`` appends
  the same lines to a file of the run;
- errors: a run that fails for a known reason (``RUN_ERRORS``: a bad binding, a gin file's
  syntax, data not found or corrupt, a file system refusing the run's files, a peer or TPU
  that does not answer) prints one ERROR line and exits 1; ``--verbose`` adds the traceback;
  Ctrl-C outside the training loop's own handling exits 130 with one line (``failure``);
- a quiet TensorFlow start: ``mi_tf.tf_quiet`` (also used by ``mi_tf.reproduce``).

Plain Python: importing this package imports neither TensorFlow nor gin.
"""

import contextlib
import datetime
import logging
import os
import re
import shlex
import signal
import socket
import sys
import textwrap
import tokenize

from absl import flags

from mi_tf import gin_files
from mi_tf import leases
from mi_tf import provenance
from mi_tf import tf_quiet

LOG_FORMAT = '%(asctime)s %(levelname)s %(message)s'
LOG_DATEFMT = '%H:%M:%S'
USAGE_ERROR = 2  # Exit status of a bad command line (1: the run itself failed).
RUN_FAILED = 1
INTERRUPTED = 128 + signal.SIGINT  # Ctrl-C (130), as a shell reports it.
# Errors a run reports as one ERROR line (exit status 1); anything else is a bug: a traceback.
# TensorFlow's own errors (tf.errors.OpError: a file system refusing a write, a read that
# fails) count too (``is_run_error``; this module does not import TensorFlow).
RUN_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError, SyntaxError,
              tokenize.TokenError)
VERBOSE_HINT = '(--verbose shows the traceback)'


# ------------------------------------------------------------------ flags

class UsageError(flags.Error):
  """A command line that parses but cannot be run (e.g. positional arguments)."""


class HelpRequested(Exception):
  """--help, --helpshort or --helpfull was given: print ``help_text`` and exit 0."""


class _HelpFlag(flags.BooleanFlag):
  """A help flag that stops the parse as soon as it is seen (before the required flags are
  checked), by raising HelpRequested."""

  def __init__(self, name, help_string, short_name=None):
    super().__init__(name, False, help_string, short_name=short_name, allow_hide_cpp=True)

  def parse(self, argument):
    super().parse(argument)
    if self.value:
      raise HelpRequested()


def new_flag_values():
  """A private FlagValues holding the help flags (--help/-?, --helpshort, --helpfull); absl's
  special flags (--flagfile, --undefok) come with every FlagValues."""
  fv = flags.FlagValues()
  flags.DEFINE_flag(_HelpFlag('help', 'show this help and exit', short_name='?'),
                    flag_values=fv)
  flags.DEFINE_flag(_HelpFlag('helpshort', 'the same as --help'), flag_values=fv)
  flags.DEFINE_flag(_HelpFlag('helpfull', 'the same as --help (every flag of this program)'),
                    flag_values=fv)
  return fv


def parse_flags(fv, argv):
  """Parses ``argv`` (argv[0]: the program) into ``fv``.

  Raises:
    HelpRequested: a help flag was given.
    flags.Error: unknown flag, bad value, missing required flag, or positional arguments.
  """
  rest = fv(list(argv))
  if len(rest) > 1:
    raise UsageError(f'unexpected arguments {rest[1:]} (every argument is a --flag)')
  return fv


def usage_error(program, error):
  """Prints a bad command line's one error line; returns the exit status (USAGE_ERROR)."""
  print(f'ERROR {type(error).__name__}: {error} ({program} --helpfull lists the flags)',
        file=sys.stderr)
  return USAGE_ERROR


def _wrapped(names, width=98):
  return textwrap.fill(', '.join(names) or '(none)', width=width, initial_indent='    ',
                       subsequent_indent='    ', break_on_hyphens=False)


def gin_files_help():
  """The help's list of gin files: experiments and fragments of ``gin_files.gin_dir()``."""
  known = gin_files.available()
  return '\n'.join([
      f'gin files (--gin_file takes a path, or one of these names; in {gin_files.gin_dir()}):',
      '  experiments:', _wrapped(known.experiments),
      '  fragments (after an experiment, e.g. --gin_file=common/quick.gin):',
      _wrapped(known.fragments)])


def help_text(doc, fv, extra=''):
  """The program's docstring, its flags (absl's rendering) and ``extra``."""
  parts = [textwrap.dedent(doc or '').strip(), 'flags:' + fv.get_help()]
  if extra:
    parts.append(extra)
  return '\n\n'.join(parts) + '\n'


def define_verbose(fv):
  """--verbose, into the FlagValues ``fv``."""
  flags.DEFINE_boolean('verbose', False, 'on an error, also print its traceback (by default: '
                       'one ERROR line).', flag_values=fv)


# ------------------------------------------------------------------ errors

def is_run_error(error):
  """Whether ``error`` is a known way for a run to fail (``RUN_ERRORS``, or a TensorFlow
  OpError) rather than a bug."""
  if isinstance(error, RUN_ERRORS):
    return True
  tf = sys.modules.get('tensorflow')
  errors = getattr(tf, 'errors', None)
  return errors is not None and isinstance(error, errors.OpError)


def error_line(error, gin_paths=()):
  """'Type: message' of ``error`` on one line: a gin file's syntax error names the file and
  the line; TensorFlow's errors lose their op and node decoration.

  Args:
    gin_paths: the gin files read, to find the one a tokenize.TokenError (an unclosed
      bracket or string, which gin reports without a file) comes from.
  """
  name = type(error).__name__
  text = f' ({error.text.strip()!r})' if getattr(error, 'text', None) else ''
  if isinstance(error, SyntaxError) and error.filename:
    message = f'gin file {error.filename}, line {error.lineno}: {error.msg}{text}'
  elif isinstance(error, SyntaxError):
    message = f'gin binding: {error.msg}{text}'
  elif isinstance(error, tokenize.TokenError):
    where = _token_error_file(gin_paths)
    message = (f'gin file {where or "(one of the files given)"}: {error.args[0]} (an unclosed '
               'bracket, parenthesis or string)')
  elif not isinstance(error, RUN_ERRORS) and isinstance(getattr(error, 'message', None), str):
    # TensorFlow's OpError: its first line, without the op and node decoration.
    lines = [line for line in error.message.splitlines() if line.strip()] or [name]
    message = re.sub(r'\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$', '', lines[0])
  else:
    message = str(error)
  # gin adds where a configurable raised (with a function's repr): the message says enough.
  message = re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", '', message)
  return f'{name}: {" ".join(message.split())}'


def _token_error_file(paths):
  """The first of ``paths`` that Python's tokenizer (gin's) cannot read to its end."""
  for path in paths:
    try:
      with open(path, encoding='utf-8') as f:
        list(tokenize.generate_tokens(f.readline))
    except tokenize.TokenError:
      return path
    except (OSError, SyntaxError, UnicodeDecodeError):
      continue
  return None


def failure(error, verbose, gin_paths=(), interrupted=''):
  """Reports a run's failure in one ERROR line (and the traceback with ``verbose``);
  returns the exit status: INTERRUPTED for Ctrl-C (the line adds ``interrupted``), else
  RUN_FAILED."""
  if isinstance(error, KeyboardInterrupt):
    logging.error('Interrupted (SIGINT).%s', f' {interrupted}' if interrupted else '',
                  exc_info=error if verbose else None)
    return INTERRUPTED
  logging.error('%s%s', error_line(error, gin_paths), '' if verbose else ' ' + VERBOSE_HINT,
                exc_info=error if verbose else None)
  return RUN_FAILED


# ------------------------------------------------------------------ logging

def start(program, doc, define_flags, argv, extra_help=''):
  """The common start of a program: a fresh FlagValues with ``define_flags(fv)``, ``argv``
  parsed (argv[0]: the program), then the quiet TensorFlow start and logging.

  Returns:
    (fv, None) to go on, or (None, exit status): 0 after --help (printed: ``doc``, the flags,
    ``extra_help``), USAGE_ERROR after a bad command line (one line).
  """
  fv = new_flag_values()
  define_flags(fv)
  try:
    parse_flags(fv, argv)
  except HelpRequested:
    sys.stdout.write(help_text(doc, fv, extra_help))
    return None, 0
  except flags.Error as e:
    return None, usage_error(program, e)
  tf_quiet.quiet_tensorflow_start()
  setup_logging()
  return fv, None


def setup_logging():
  """Python logging to stderr (``LOG_FORMAT``): WARNING and above, and ``mi_tf`` at INFO.
  (A no-op for the root handler where one exists already, e.g. under pytest.)"""
  logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
  logging.getLogger('mi_tf').setLevel(logging.INFO)


class RunLog(logging.Handler):
  """Appends every log record of this process to ``<model_dir>/<name>``, formatted as on
  stderr, after a ``==== <time> <argv> (mi_tf <version>, <commit>)`` line per session.

  Nothing is written until this process owns the run, i.e. holds its training lease
  (``leases.TRAIN_LEASE_FILE``, taken by ``mi_tf.run_dir`` before the run's first write);
  from then on every record is appended, also after the lease is released (the run's final
  ERROR line). Records before are kept until then, or dropped at ``close()``: a command that
  is refused (a typo in a binding, another process training the run, other data) or that
  finds the run finished leaves the model_dir as it was. Only for local model_dirs (see
  ``attach``).
  """

  def __init__(self, model_dir, name, argv):
    super().__init__()
    self.model_dir = model_dir
    self.path = os.path.join(model_dir, name)
    self.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    version = provenance.code_version()
    self._header = (f'==== {datetime.datetime.now().isoformat(timespec="seconds")} '
                    f'{" ".join(shlex.quote(a) for a in argv)} '
                    f'(mi_tf {version["package_version"]}, {provenance.short(version)})')
    self._pending = []
    self._failed = False
    self._owned = False

  def emit(self, record):
    try:
      self._pending.append(self.format(record))
      self.flush()
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)

  def flush(self):
    if self._failed or not self._pending or not self._owns_run():
      return
    lines = ([self._header] if self._header else []) + self._pending
    self._header, self._pending = None, []
    try:
      with open(self.path, 'a', encoding='utf-8') as f:
        f.write(''.join(line + '\n' for line in lines))
    except OSError as e:  # Say so once, then log to stderr only.
      self._failed = True
      print(f'WARNING: cannot append to {self.path} ({e}); logging to stderr only.',
            file=sys.stderr)

  def _owns_run(self):
    if not self._owned:
      lease = leases.read(self.model_dir, leases.TRAIN_LEASE_FILE)
      self._owned = bool(lease) and lease.get('pid') == os.getpid() and (
          lease.get('host') == socket.gethostname())
    return self._owned

  @classmethod
  @contextlib.contextmanager
  def attach(cls, model_dir, name, argv):
    """Within the block, the root logger also writes to ``<model_dir>/<name>`` (for a local
    model_dir; a ``scheme://`` one gets no file)."""
    if '://' in str(model_dir):
      yield None
      return
    handler = cls(os.path.abspath(model_dir), name, argv)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
      yield handler
    finally:
      root.removeHandler(handler)
      handler.flush()
      handler.close()
