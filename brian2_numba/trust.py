"""May this process load compiled code from a directory? (the ssh test)

numba's cache files are pickles: loading one runs whatever it says. So a
kernel directory is only used if nobody but the current user can have put
files in it, the test ssh applies to ``~/.ssh``:

* the directory is not a symbolic link (an attacker's link in a shared
  ``/tmp`` would redirect us to their files);
* it is owned by the current user;
* it is not writable by group or others;
* its parent is not writable by others without the sticky bit (else another
  user could replace the directory itself).

Files we create are 0600 and directories 0700. On platforms without POSIX
ownership (Windows) only the symbolic-link test applies; a user's cache
directory there (``%LOCALAPPDATA%``) is private by its ACLs.
"""

import os
import stat

__all__ = ["untrusted_reason", "make_private_directory", "untrusted_file_reason"]

#: POSIX ownership and modes can be checked here
HAVE_OWNERSHIP = hasattr(os, "geteuid")


def _owner_problem(info, what):
    if not HAVE_OWNERSHIP:
        return None
    if info.st_uid != os.geteuid():
        return f"{what} is owned by user id {info.st_uid}, not by you (user id {os.geteuid()})"
    if info.st_mode & 0o022:
        return (f"{what} can be written by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}; 'chmod go-w' fixes this)")
    return None


def untrusted_reason(directory):
    """Why ``directory`` must not be trusted, or ``None`` if it can be.

    ``directory`` must exist. Its parent is checked too: a parent that others
    can write to without the sticky bit lets them swap the directory.
    """
    try:
        info = os.lstat(directory)
    except OSError as exc:
        return f"it cannot be inspected ({exc})"
    if stat.S_ISLNK(info.st_mode):
        return (f"it is a symbolic link (to '{os.path.realpath(directory)}'); "
                "set the cache directory to the real directory instead")
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    problem = _owner_problem(info, "it")
    if problem:
        return problem
    if HAVE_OWNERSHIP:
        parent = os.path.dirname(os.path.abspath(directory))
        try:
            parent_info = os.stat(parent)
        except OSError as exc:
            return f"its parent directory cannot be inspected ({exc})"
        if parent_info.st_mode & 0o002 and not parent_info.st_mode & stat.S_ISVTX:
            return (f"its parent directory '{parent}' can be written by anyone and "
                    "has no sticky bit, so others could replace it")
    return None


def untrusted_file_reason(path):
    """Why the existing file ``path`` must not be loaded, or ``None``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be inspected ({exc})"
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    return _owner_problem(info, "it")


def make_private_directory(directory):
    """Create ``directory`` (0700) and its missing parents; never chmod.

    Existing directories are left as they are: whether they can be trusted
    is for :func:`untrusted_reason` to say.
    """
    directory = os.path.abspath(directory)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:  # there already, or another process was faster
        pass
