"""Directories and files only their owner may touch: the temp dir (sessions, the address file
`init("auto")` trusts), the SSH control directory, token and key files.

A directory is made 0700; one that exists must be a real directory (not a symlink), owned by this
user and writable by nobody else, or it is refused with one line naming the fix: whoever owns or
can write it could swap the address file and point drivers at their own listener. Files are
written under a fresh name with O_CREAT|O_EXCL|O_NOFOLLOW and 0600, then renamed over the target,
so a planted symlink is replaced, never followed. Reading follows symlinks (mounted secrets
are symlinks)."""

from __future__ import annotations

import os
import secrets
import stat


def ensure_private_dir(path: str, what: str = "temp dir", env_hint: str = "RAYCTL_TEMP_DIR") -> str:
    """Make `path` (0700) or check the existing one; returns it."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=False)
        return path
    except FileExistsError:
        pass
    check_private_dir(path, what, env_hint)
    return path


def check_private_dir(path: str, what: str = "temp dir", env_hint: str = "RAYCTL_TEMP_DIR") -> bool:
    """False when `path` does not exist; True when it is private; else PermissionError."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.getuid():
        problem = f"is owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
    elif info.st_mode & 0o022:
        problem = f"is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    if problem:
        raise PermissionError(
            f"{what} {path} {problem}: anyone who can write it could redirect your drivers; "
            f"remove it, or set {env_hint} to a directory of your own (chmod 700)"
        )
    return True


def write_private_file(path: str, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (0600 from the start), replacing what
    is there (a symlink included: it is replaced, not followed)."""
    fresh = f"{path}.{secrets.token_hex(4)}.new"
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(fresh, path)
    except BaseException:
        try:
            os.unlink(fresh)
        except FileNotFoundError:
            pass
        raise
