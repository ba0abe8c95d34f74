"""The one base class of the errors a user's input causes.

Every error nerfsculpt raises because of what it was given (a bad flag, a checkpoint it will not
load, a bank of another generator, a preference that breaks a rule) derives from
:class:`NerfsculptError`, with a message that says what to do next. The command line reports these
in one line and exits with code 2; anything else is a bug and shows its traceback.

Example::

    try:
        open_bank("not-a-bank/")
    except NerfsculptError as error:
        print(error)
"""

from __future__ import annotations


class NerfsculptError(Exception):
    """An error caused by the input (arguments, files, state); the message says what to do instead."""
