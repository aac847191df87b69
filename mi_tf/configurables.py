"""Imports every module that registers gin configurables, so gin files can name them."""

# pylint: disable=unused-import
from mi_tf import critics  # noqa: F401
from mi_tf import encoders  # noqa: F401
from mi_tf import probe  # noqa: F401
from mi_tf import tasks  # noqa: F401
from mi_tf import train_lib  # noqa: F401
from mi_tf import toy_task  # noqa: F401
from mi_tf import adversarial  # noqa: F401
from mi_tf import supervised  # noqa: F401
